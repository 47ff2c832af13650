// Package backend defines the one interface both VM kinds implement: Guix
// System VMs run by local QEMU, and microvm.nix VMs (local or on a remote
// hypervisor). The CLI talks only to this interface.
package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/devvm/devvm/launcher/sshx"
)

// Backend manages the machines of one Vmfile.
type Backend interface {
	// Kind is "guix" or "microvm".
	Kind() string
	// Machines lists the machine names of the Vmfile (one for guix).
	Machines() []string
	// Build builds without starting (cached).
	Build(ctx context.Context, opts BuildOptions) error
	// Up builds when needed, starts and waits until SSH works.
	Up(ctx context.Context, names []string, opts UpOptions) error
	// Status reports each machine.
	Status(ctx context.Context, names []string) ([]Status, error)
	// Halt stops machines, gracefully first.
	Halt(ctx context.Context, names []string, opts HaltOptions) error
	// Destroy stops machines and removes everything devvm keeps for them.
	Destroy(ctx context.Context, names []string, opts DestroyOptions) error
	// GC removes builds no machine uses any more and collects the store.
	GC(ctx context.Context, opts GCOptions) (*GCReport, error)
	// SSHTarget says how to reach a machine's sshd (pinned host key).
	SSHTarget(ctx context.Context, name string) (*sshx.Target, error)
	// SSHConfig renders an OpenSSH stanza for a machine (pinned host key).
	SSHConfig(ctx context.Context, name string) (string, error)
	// Logs writes a machine's console or service log.
	Logs(ctx context.Context, name string, opts LogOptions, w io.Writer) error
	// Console attaches in/out to a machine's serial console.
	Console(ctx context.Context, name string, in *os.File, out io.Writer) error
	// Restart halts machines and boots their last build again.
	Restart(ctx context.Context, names []string) error
	// Rollback boots machines from their previous build (Capabilities.Rollback).
	Rollback(ctx context.Context, names []string) error
	// Run runs a stopped machine in the foreground on this terminal.
	Run(ctx context.Context, name string) error
	// Capabilities says which optional verbs the backend has.
	Capabilities() Capabilities
}

// Check is one line of `devvm doctor`: what was checked, whether it is
// fine, whether the backend cannot work without it, and the fix.
type Check struct {
	Name     string `json:"check"`
	OK       bool   `json:"ok"`
	Required bool   `json:"required"`
	Detail   string `json:"detail"`
	Fix      string `json:"fix,omitempty"`
}

// Capabilities are the optional verbs of a backend.
type Capabilities struct {
	Console  bool // an attachable serial console
	Rollback bool // a previous build to go back to
}

// DefaultHaltTimeout bounds a halt when no --timeout is given.
const DefaultHaltTimeout = 60 * time.Second

// BuildOptions for Build and Up.
type BuildOptions struct {
	Rebuild bool          // ignore the cache
	Timeout time.Duration // 0 = the Vmfile's
}

// UpOptions for Up.
type UpOptions struct {
	BuildOptions
	Timeout    time.Duration // SSH readiness; 0 = the Vmfile's boot_timeout
	Foreground bool          // serial console on this terminal; VM stops with the command
}

// HaltOptions for Halt.
type HaltOptions struct {
	Force   bool          // skip the graceful steps
	Timeout time.Duration // total bound
}

// DestroyOptions for Destroy.
type DestroyOptions struct {
	Force bool // no graceful halt
	Yes   bool // do not ask (a running VM, a persistent disk)
	GC    bool // collect the store afterwards
}

// GCOptions for GC.
type GCOptions struct {
	DryRun bool
	// Store collects every dead item of the store, not only the items of
	// devvm's own dead builds.
	Store bool
}

// GCReport says what GC removed.
type GCReport struct {
	Roots      []string // GC roots removed (or that would be)
	Files      []string // other files removed (old disks)
	FreedBytes int64    // -1 when unknown
	StoreGC    bool     // the store's GC ran
}

// LogOptions for Logs.
type LogOptions struct {
	Follow bool
	Lines  int // last N lines; 0 = all
	// WaitingForBoot, if set, is called once when Follow waits for a log
	// that does not exist yet because the machine never booted, before
	// waiting; the CLI tells the user so.
	WaitingForBoot func()
}

// ErrNoLog is matched (errors.Is) by the error Logs returns without Follow
// when the machine never booted, so there is no log yet.
var ErrNoLog = errors.New("no log yet: the machine has not booted")

// Machine states.
const (
	Running  = "running"
	Stopped  = "stopped"
	Broken   = "broken"
	Outdated = "outdated" // only in Status.Notes / microvm
	Failed   = "failed"
	Starting = "starting"
)

// Status of one machine.
type Status struct {
	Name     string    `json:"name"`
	Backend  string    `json:"backend"`
	State    string    `json:"state"`
	Reason   string    `json:"reason,omitempty"`
	Outdated bool      `json:"outdated"`
	PID      int       `json:"pid,omitempty"`
	Started  time.Time `json:"started,omitempty"`
	Uptime   string    `json:"uptime,omitempty"`
	Accel    string    `json:"accel,omitempty"`
	SSH      string    `json:"ssh,omitempty"`
	Shares   []string  `json:"shares,omitempty"`
	Forwards []string  `json:"forwards,omitempty"`
	CPU      float64   `json:"cpu_percent,omitempty"`
	RSS      uint64    `json:"rss_bytes,omitempty"`
	BuildKey string    `json:"build_key,omitempty"`
	Checkout string    `json:"checkout,omitempty"`
	Hint     string    `json:"hint,omitempty"`
	// ShareList and ForwardList are Shares and Forwards as structures
	// (what `status --json` prints); nil when the backend does not say.
	ShareList   []ShareStatus   `json:"-"`
	ForwardList []ForwardStatus `json:"-"`
}

// ShareStatus is one directory shared with a machine.
type ShareStatus struct {
	Host     string // absolute host directory
	Guest    string // mount point in the guest
	Tag      string // 9p mount tag
	Mode     string // "virtio" or "ssh"
	ReadOnly bool
	// Server is the pid of devvm's share server (mode "ssh"), 0 otherwise.
	Server int
	// Problem says why the share does not work now (e.g. its server
	// exited, with the fix); empty when it works.
	Problem string
}

// ForwardStatus is one port forwarded from the host to a machine.
type ForwardStatus struct {
	Proto string // "tcp" or "udp"
	Bind  string // host address
	Host  int    // host port
	Guest int    // guest port
}

// UI is where commands report progress.
type UI struct {
	// Err receives progress and warnings (stderr).
	Err io.Writer
	// Terminal is true when Err is a terminal that takes control sequences
	// (spinners); false for a pipe or TERM=dumb.
	Terminal bool
	// In is the terminal to ask questions on (nil: never ask).
	In *os.File
	// Debug, when not nil (devvm --debug), receives what devvm runs: guix
	// and QEMU argv, SSH targets. Write to it with Debugf.
	Debug io.Writer
}

// Printf writes one progress line.
func (u *UI) Printf(format string, a ...any) {
	fmt.Fprintf(u.Err, "devvm: "+format+"\n", a...)
}

// Debugf writes one --debug line when Debug is set.
func (u *UI) Debugf(format string, a ...any) {
	if u.Debug != nil {
		fmt.Fprintf(u.Debug, "devvm: debug: "+format+"\n", a...)
	}
}

// Confirm asks a yes/no question on In; no answer is no.
func (u *UI) Confirm(q string) bool {
	if u.In == nil {
		return false
	}
	fmt.Fprintf(u.Err, "%s [y/N] ", q)
	var b [64]byte
	n, _ := u.In.Read(b[:])
	a := strings.ToLower(strings.TrimSpace(string(b[:n])))
	return a == "y" || a == "yes"
}

// Phase shows a phase that may take a while, with elapsed time on a
// terminal or a line before and after elsewhere; the func it returns ends it.
func (u *UI) Phase(what string) func() {
	start := time.Now()
	if !u.Terminal {
		u.Printf("%s", what)
		return func() { u.Printf("%s: done after %.1fs", what, time.Since(start).Seconds()) }
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		frames := `|/-\`
		tk := time.NewTicker(150 * time.Millisecond)
		defer tk.Stop()
		for i := 0; ; i++ {
			select {
			case <-done:
				fmt.Fprintf(u.Err, "\r\033[Kdevvm: %s: %.1fs\n", what, time.Since(start).Seconds())
				return
			case <-tk.C:
				fmt.Fprintf(u.Err, "\r\033[Kdevvm: %s %c %.0fs", what, frames[i%4], time.Since(start).Seconds())
			}
		}
	}()
	return func() { close(done); <-finished }
}
