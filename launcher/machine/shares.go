package machine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/proc"
	"github.com/devvm/devvm/launcher/sshx"
	"github.com/devvm/devvm/launcher/state"
	"github.com/devvm/devvm/launcher/vmfile"
)

// This file supervises `devvm share-serve` processes (share.RunDaemon
// behind the command line of cmd/devvm/shareserve.go): one detached process
// per `mode = "ssh"` share of a machine, started once the machine's SSH is
// ready, recorded in its Record with its proven identity, stopped before the
// guest goes down and reported by `devvm status`.

const (
	// ServerReadyTimeout bounds how long `up` waits for a share server to
	// mount its share in the guest (slow under TCG on a loaded host).
	ServerReadyTimeout = 3 * time.Minute
	// ServerStopTimeout bounds the graceful stop of a share server (it
	// unmounts in the guest first) before SIGKILL.
	ServerStopTimeout = 15 * time.Second
)

// Served is a `devvm share-serve` process serving one `mode = "ssh"`
// share; backends keep it in a machine's record (the JSON field names are
// part of runtime.json) and only signal it after proc.Check proves it is
// still that process.
type Served struct {
	Tag      string        `json:"tag"`
	Host     string        `json:"host"`
	Guest    string        `json:"guest"`
	ReadOnly bool          `json:"readonly,omitempty"`
	Identity proc.Identity `json:"identity"`
	Log      string        `json:"log"`
	Started  time.Time     `json:"started"`
}

// Spec is one share to serve: Host is the resolved host directory.
type Spec struct {
	Tag      string
	Host     string
	Guest    string
	ReadOnly bool
}

// SSHSpecs returns the `mode = "ssh"` shares of a Vmfile, host paths resolved.
func SSHSpecs(vf *vmfile.Vmfile) []Spec {
	var out []Spec
	for _, s := range vf.Shares {
		if s.Mode == vmfile.ShareSSH {
			out = append(out, Spec{Tag: s.Tag, Host: vf.Resolve(s.Host), Guest: s.Guest, ReadOnly: s.ReadOnly})
		}
	}
	return out
}

// Files are where a server's state lives.
type Files struct {
	// Marker is in the server's command line: proc.Check looks for it.
	Marker string
	// Pidfile is locked by the server while it serves.
	Pidfile string
	// Log receives the server's output.
	Log string
}

// ServerFiles names the files of a machine's server for tag:
// <vm dir>/share-<tag>.{pid,log} and the machine's marker + "-share-<tag>".
func ServerFiles(v *state.VM, tag string) Files {
	return Files{Marker: v.Marker() + "-share-" + tag, Pidfile: v.Path("share-" + tag + ".pid"), Log: v.Path("share-" + tag + ".log")}
}

// Servers starts the share servers of one machine.
type Servers struct {
	// Name is the machine's name, for messages.
	Name string
	// VM is the machine's local state (ServerFiles).
	VM *state.VM
	// Env runs the server (Env.Command) and dates it (Env.Now).
	Env *hostenv.Env
	// UI receives progress lines.
	UI *backend.UI
	// Target is how the server reaches the guest (with Jump when the guest
	// is behind a jump host); it must be expressible as share-serve flags
	// (TargetArgs).
	Target sshx.Target
	// Exe is the devvm executable to run (empty: this one, os.Executable).
	Exe string
}

// Index returns the index of tag's server in recs, or -1.
func Index(recs []Served, tag string) int {
	for i, s := range recs {
		if s.Tag == tag {
			return i
		}
	}
	return -1
}

// Ensure starts a server for each spec that has no live one in *recs
// (first boot, or its server died: `up` restores it), updating *recs and
// calling save after each start. The machine must be ready (SSH answers with
// the pinned host key).
func (s *Servers) Ensure(ctx context.Context, specs []Spec, recs *[]Served, save func() error) error {
	var errs []error
	for _, sp := range specs {
		if i := Index(*recs, sp.Tag); i >= 0 {
			switch v := proc.Check((*recs)[i].Identity); v.State {
			case proc.Alive:
				continue
			case proc.Unknown:
				errs = append(errs, fmt.Errorf("share %s: cannot tell whether its server still runs (%s); not starting another", sp.Guest, v.Reason))
				continue
			default:
				s.UI.Printf("share %s: its server is down (%s); restarting it", sp.Guest, v.Reason)
			}
		}
		srv, err := s.start(ctx, sp)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if i := Index(*recs, sp.Tag); i >= 0 {
			(*recs)[i] = *srv
		} else {
			*recs = append(*recs, *srv)
		}
		if err := save(); err != nil {
			return err
		}
		s.UI.Printf("share %s: mounted in the guest, served over SSH by pid %d (log: %s)", sp.Guest, srv.Identity.PID, srv.Log)
	}
	if len(errs) > 0 {
		return fmt.Errorf("VM %q is running, but not every share is mounted:\n%w\nhint: `devvm up` tries again", s.Name, errors.Join(errs...))
	}
	return nil
}

// start starts `devvm share-serve` detached for one share and waits until
// it reports the share mounted.
func (s *Servers) start(ctx context.Context, sp Spec) (*Served, error) {
	fail := func(format string, a ...any) (*Served, error) {
		return nil, fmt.Errorf("share %s: %s", sp.Guest, fmt.Sprintf(format, a...))
	}
	exe := s.Exe
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return fail("cannot find the devvm executable to run its share server: %v", err)
		}
	}
	targs, err := sshx.EncodeTarget(s.Target)
	if err != nil {
		return fail("%v", err)
	}
	f := ServerFiles(s.VM, sp.Tag)
	args := append([]string{"share-serve"}, targs...)
	args = append(args, "--root", sp.Host, "--guest", sp.Guest, "--pidfile", f.Pidfile, "--marker", f.Marker, "--ready-fd", "3")
	if sp.ReadOnly {
		args = append(args, "--readonly")
	}
	if err := s.VM.Ensure(); err != nil {
		return fail("%v", err)
	}
	logf, err := state.OpenFile(f.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fail("cannot open the server's log: %v", err)
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return fail("%v", err)
	}
	defer devnull.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return fail("cannot create the readiness pipe: %v", err)
	}
	defer r.Close()
	command := exec.CommandContext
	if s.Env != nil && s.Env.Command != nil {
		command = s.Env.Command
	}
	// Not bound to ctx: the server outlives this command.
	cmd := command(context.Background(), exe, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, logf, logf
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return fail("cannot start its server %s: %v", exe, err)
	}
	// Until it is released the server is our unreaped child: its pid cannot
	// be reused, so killing it through cmd.Process is safe.
	abandon := func() {
		cmd.Process.Kill()
		cmd.Wait()
	}
	stop := s.UI.Phase(fmt.Sprintf("mounting %s → %s over SSH", sp.Host, sp.Guest))
	msg, err := readReady(ctx, r, ServerReadyTimeout)
	stop()
	if err != nil {
		abandon()
		return fail("%v\nhint: the server's log is %s", err, f.Log)
	}
	if msg != "ready" {
		abandon()
		if msg == "" {
			msg = "its server exited without a word; " + logTail(f.Log)
		}
		return fail("%s\nhint: the server's log is %s", msg, f.Log)
	}
	id, err := proc.Capture(cmd.Process.Pid, f.Marker, f.Pidfile)
	if err != nil {
		abandon()
		return fail("its server (pid %d) cannot be verified: %v", cmd.Process.Pid, err)
	}
	cmd.Process.Release()
	now := time.Now
	if s.Env != nil && s.Env.Now != nil {
		now = s.Env.Now
	}
	return &Served{Tag: sp.Tag, Host: sp.Host, Guest: sp.Guest, ReadOnly: sp.ReadOnly, Identity: id, Log: f.Log, Started: now()}, nil
}

// readReady reads what the server writes on its readiness pipe until it
// closes it: "ready", or an error message.
func readReady(ctx context.Context, r *os.File, timeout time.Duration) (string, error) {
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := io.ReadAll(r)
		done <- result{b, err}
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case res := <-done:
		if res.err != nil {
			return "", fmt.Errorf("reading its server's readiness: %v", res.err)
		}
		return strings.TrimSpace(string(res.b)), nil
	case <-timer.C:
		return "", fmt.Errorf("its server did not mount it within %s", timeout)
	case <-ctx.Done():
		return "", fmt.Errorf("interrupted while its server mounted it: %w", context.Cause(ctx))
	}
}

// logTail returns the last lines of a server log for an error message.
func logTail(path string) string {
	b, err := state.ReadFile(path, 1<<20)
	if err != nil {
		return "no log: " + err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return "its log ends with:\n  " + strings.Join(lines, "\n  ")
}

// StopServers stops recorded share servers: SIGTERM (the server unmounts in
// the guest), then SIGKILL after ServerStopTimeout. A server that
// proc.Check does not prove to be ours is never signalled.
func StopServers(ctx context.Context, ui *backend.UI, recs []Served) {
	for _, s := range recs {
		id := s.Identity
		if err := proc.Signal(id, syscall.SIGTERM); err != nil {
			var na *proc.NotAliveError
			if !errors.As(err, &na) {
				ui.Printf("share %s: could not stop its server: %v", s.Guest, err)
			} else if na.Verdict.State != proc.Gone {
				ui.Printf("share %s: not stopping pid %d: %s", s.Guest, id.PID, na.Verdict.Reason)
			}
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, ServerStopTimeout)
		err := proc.WaitGone(wctx, id, gonePoll)
		cancel()
		if err == nil {
			continue
		}
		ui.Printf("share %s: its server (pid %d) ignored SIGTERM; killing it", s.Guest, id.PID)
		if err := proc.Signal(id, syscall.SIGKILL); err == nil {
			kctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			proc.WaitGone(kctx, id, gonePoll)
			cancel()
		}
	}
}

// ShareStatus describes each share of specs for `devvm status` of a ready
// machine: served by a live recorded server, or DOWN and why.
func ShareStatus(specs []Spec, recs []Served) []string {
	var lines []string
	for _, sp := range specs {
		i := Index(recs, sp.Tag)
		switch {
		case i < 0:
			lines = append(lines, fmt.Sprintf("share %s: DOWN (no server was started): run `devvm up` to restore", sp.Guest))
		case proc.Check(recs[i].Identity).State == proc.Alive:
			lines = append(lines, fmt.Sprintf("share %s: served over SSH by pid %d", sp.Guest, recs[i].Identity.PID))
		default:
			lines = append(lines, fmt.Sprintf("share %s: DOWN (server exited): run `devvm up` to restore (its log: %s)", sp.Guest, recs[i].Log))
		}
	}
	return lines
}

// startShares starts a server for each `mode = "ssh"` share of the Vmfile
// that has no live one (first boot, or its server died: `up` restores it)
// and records them in the machine's record. The machine must be ready.
func (mg *Manager) startShares(ctx context.Context, m *Machine, rec *Record) error {
	specs := SSHSpecs(mg.vf)
	if len(specs) == 0 {
		return nil
	}
	t, err := mg.d.Target(m, rec)
	if err != nil {
		return err
	}
	srv := &Servers{Name: m.Name, VM: m.VM, Env: mg.env, UI: mg.ui, Target: *t}
	return srv.Ensure(ctx, specs, &rec.SSHShares, func() error { return mg.save(m, rec) })
}

// stopShares stops the recorded share servers of a machine (they unmount in
// the guest first).
func (mg *Manager) stopShares(ctx context.Context, rec *Record) {
	if rec == nil || len(rec.SSHShares) == 0 {
		return
	}
	StopServers(ctx, mg.ui, rec.SSHShares)
	rec.SSHShares = nil
}
