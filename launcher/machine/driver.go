// Package machine is devvm's VM lifecycle, written once for every backend:
// pick machines, lock, observe, build when needed, start, wait for SSH and
// pin the host key, write ssh_config, serve `mode = "ssh"` shares, register,
// halt by escalation, destroy, follow logs, report status. What differs
// between backends (how to build, how to start, where SSH is, which stop
// primitives exist, where logs come from) is a Driver; optional verbs are
// capabilities declared beside it (Foregrounder, Consoler, LogStreamer,
// Rollbacker, Runner, ...), in the way Lima's pkg/driver composes small
// interfaces. Manager implements backend.Backend over any Driver.
package machine

import (
	"context"
	"io"
	"os"
	"time"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/proc"
	"github.com/devvm/devvm/launcher/sshx"
	"github.com/devvm/devvm/launcher/state"
)

// Machine is one VM of a Vmfile and its private files.
type Machine struct {
	Name string
	VM   *state.VM
}

// RecordSchema is the version of Record's JSON.
const RecordSchema = 1

// Record is what devvm knows of a started machine (record.json), the same
// schema for every backend. It is evidence, not orders: the process it names
// is checked against the marker and pidfile the driver derives from the
// machine (Driver.Identity), never against fields read back from it, and
// sockets and files are the machine's own paths.
type Record struct {
	Schema  int    `json:"schema"`
	Backend string `json:"backend"`
	// Process is the local process that is the machine (QEMU, a microvm.nix
	// hypervisor); nil for a machine managed by a remote systemd.
	Process *proc.Identity `json:"process,omitempty"`
	// Adopted: the process was taken over from a legacy .devvm record; its
	// identity was proven from /proc and it has no pidfile devvm trusts.
	Adopted  bool     `json:"adopted,omitempty"`
	Accel    string   `json:"accel,omitempty"`
	SSHHost  string   `json:"ssh_host"`
	SSHPort  int      `json:"ssh_port"`
	Forwards []string `json:"forwards,omitempty"`
	Shares   []string `json:"shares,omitempty"`
	BuildKey string   `json:"build_key,omitempty"`
	// Artifact is what was booted (run-vm.sh, a microvm runner).
	Artifact   string    `json:"artifact,omitempty"`
	Disk       string    `json:"disk,omitempty"`
	Argv       []string  `json:"argv,omitempty"`
	Console    bool      `json:"console,omitempty"` // the console socket can be attached
	Foreground bool      `json:"foreground,omitempty"`
	Started    time.Time `json:"started"`
	// Ready is set once SSH answered with devvm's key at this boot.
	Ready bool `json:"ready"`
	// LoginRefused is set when the guest's sshd answered but refused every
	// key devvm offered: the machine runs but devvm cannot log in.
	LoginRefused string `json:"login_refused,omitempty"`
	// SSHShares are the servers of the `mode = "ssh"` shares.
	SSHShares []Served `json:"ssh_shares,omitempty"`

	// wait, for a foreground start, waits for the process to exit.
	wait func() error
}

// SetWait is how a driver's foreground Start hands over the wait of the
// process it runs attached.
func (r *Record) SetWait(wait func() error) { r.wait = wait }

// Ciphers is the SSH cipher preference for this boot: under TCG the guest's
// sshd does its cryptography on an emulated CPU without AES-NI.
func (r *Record) Ciphers() []string {
	if r.Accel == "tcg" {
		return sshx.EmulatedCPUCiphers
	}
	return nil
}

// Build is the result of a build (build.json), the same schema for every
// backend.
type Build struct {
	Key string `json:"key"`
	// Same are later keys whose inputs were shown (by evaluating them) to
	// give this build's Derivation: they stand for Key (its GC root and disk).
	Same []string `json:"same_keys,omitempty"`
	// Artifact is what Start boots (run-vm.sh, a runner).
	Artifact   string    `json:"artifact"`
	Root       string    `json:"gc_root,omitempty"`
	Derivation string    `json:"derivation,omitempty"`
	Command    []string  `json:"command,omitempty"`
	Persistent bool      `json:"persistent,omitempty"`
	BuiltAt    time.Time `json:"built_at"`
	Seconds    float64   `json:"seconds"`
	// Changed: this build produced a different artifact than the last one.
	Changed bool `json:"-"`
	// Restarted: the build itself restarted the running machine (a switch
	// of a hypervisor's configuration).
	Restarted bool `json:"-"`
}

// Verdict is what a driver observes of a recorded machine.
type Verdict struct {
	State  string // backend.Running, Stopped, Broken or Failed (a unit that failed: up starts it again)
	Reason string
	// Err, when set, is why the driver could not look at all (the
	// hypervisor refuses devvm's login): the command fails with it.
	Err error
}

// Driver is what one backend does differently.
type Driver interface {
	// Kind is the backend's name ("guix", "microvm").
	Kind() string
	// Machines lists the Vmfile's machine names, sorted.
	Machines() []string
	// Identity is the marker in the command line and the pidfile that
	// prove the machine's local process ("", "" for a remote machine).
	Identity(m *Machine) (marker, pidfile string)
	// Probe checks what the process check cannot: a live process whose
	// monitor does not answer (Broken), or a remote machine's unit. It is
	// called with a live (or no) process.
	Probe(ctx context.Context, m *Machine, rec *Record) Verdict
	// Preflight refuses early what would fail after a long build (a busy
	// pinned port).
	Preflight(ctx context.Context, m *Machine) error
	// Build builds the machine when its inputs changed since prev (nil:
	// never built), or returns prev.
	Build(ctx context.Context, m *Machine, prev *Build, opts backend.BuildOptions) (*Build, error)
	// Start boots b. With fg the process runs attached to this terminal
	// and the record carries its wait (Record.SetWait).
	Start(ctx context.Context, m *Machine, b *Build, fg bool) (*Record, error)
	// Target says how to reach the machine's sshd.
	Target(m *Machine, rec *Record) (*sshx.Target, error)
	// SSHConfig renders the OpenSSH stanza(s) of the machine.
	SSHConfig(m *Machine, rec *Record) (string, error)
	// Outdated says why the running machine is not what a build of its
	// current inputs would boot ("" when it is current).
	Outdated(ctx context.Context, m *Machine, rec *Record) string
	// Stops are the driver's graceful stop primitives, tried in order after
	// the guest's own power-off (PowerOffer) and before signals.
	Stops(m *Machine, rec *Record) []Stop
	// Clean removes what the driver keeps for a destroyed machine outside
	// its state directory (a hypervisor's VM directory).
	Clean(ctx context.Context, m *Machine) error
	// GC removes the builds of each target but those it keeps, and
	// collects what they alone held in the store.
	GC(ctx context.Context, ts []GCTarget, opts backend.GCOptions) (*backend.GCReport, error)
}

// GCTarget is a machine whose unused builds GC removes: every build but
// the keys in Keep (nil Keep: the machine is destroyed, nothing is kept).
type GCTarget struct {
	M    *Machine
	Keep map[string]bool
}

// Stop is one graceful rung of the halt ladder.
type Stop struct {
	// Name says what it does, for messages ("ACPI power button via QMP").
	Name string
	// Do asks the machine to stop; the ladder then waits for it.
	Do func(ctx context.Context) error
	// Reserve is the part of the halt budget kept for the rungs after it.
	Reserve time.Duration
}

// Optional capabilities, declared beside Driver.

// PowerOffer powers the guest off from inside over SSH: the first rung.
type PowerOffer interface {
	// PowerOffCommand is run as the login user; the connection dropping
	// under it is expected.
	PowerOffCommand() string
}

// Consoler attaches a terminal to the machine's serial console.
type Consoler interface {
	Console(ctx context.Context, m *Machine, rec *Record, in *os.File, out io.Writer, msg io.Writer) error
}

// LogStreamer streams logs from where the driver keeps them (a remote
// journal); without it the lifecycle follows the console log file.
type LogStreamer interface {
	StreamLogs(ctx context.Context, m *Machine, opts backend.LogOptions, w io.Writer) error
}

// Preparer runs once before the machines of one command are built (sync a
// remote checkout).
type Preparer interface {
	Prepare(ctx context.Context, ms []*Machine) error
}

// Updater: `up` of a running machine deploys its current inputs and
// restarts it when they changed (a hypervisor's `microvm -Ru`), instead of
// reporting it outdated.
type Updater interface {
	UpdatesRunning() bool
}

// Restarter restarts a running machine in one step (`systemctl restart`)
// and returns its new record; without it a restart is a halt and a boot.
type Restarter interface {
	RestartMachine(ctx context.Context, m *Machine, b *Build) (*Record, error)
}

// Prebuilder builds what `devvm build` builds when that is not what `up`
// deploys (a hypervisor's runners, without touching its VMs).
type Prebuilder interface {
	Prebuild(ctx context.Context, m *Machine) error
}

// Rollbacker points a machine back at its previous build and returns it;
// the lifecycle records it and restarts the machine from it.
type Rollbacker interface {
	Rollback(ctx context.Context, m *Machine) (*Build, error)
}

// Runner runs a stopped machine in the foreground in the driver's own way
// (`microvm -r` on a hypervisor); without it `run` is `up --foreground`.
type Runner interface {
	Run(ctx context.Context, m *Machine) error
}

// Describer adds driver facts to a status.
type Describer interface {
	Describe(m *Machine, rec *Record, s *backend.Status)
}

// LoginHinter says how to get a key authorized in the machine's OS when
// its sshd refuses every key devvm offers.
type LoginHinter interface {
	LoginHint(m *Machine, user string) string
}

// Closer ends connections a driver holds (a hypervisor's SSH).
type Closer interface {
	Close() error
}
