package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/devvm/devvm/launcher/proc"
	"github.com/devvm/devvm/launcher/state"
	"github.com/devvm/devvm/launcher/vmfile"
)

const (
	// shareReadyTimeout bounds how long `up` waits for a share server to
	// mount its share in the guest (slow under TCG on a loaded host).
	shareReadyTimeout = 3 * time.Minute
	// shareStopTimeout bounds the graceful stop of a share server (it
	// unmounts in the guest first) before SIGKILL.
	shareStopTimeout = 15 * time.Second
)

// SSHShare is a `devvm share-serve` process serving one `mode = "ssh"`
// share; it is recorded in the runtime record like QEMU and only signalled
// after proc.Check proves it is still that process.
type SSHShare struct {
	Tag      string        `json:"tag"`
	Host     string        `json:"host"`
	Guest    string        `json:"guest"`
	ReadOnly bool          `json:"readonly,omitempty"`
	Identity proc.Identity `json:"identity"`
	Log      string        `json:"log"`
	Started  time.Time     `json:"started"`
}

func (g *Guix) shareMarker(tag string) string  { return g.VM.Marker() + "-share-" + tag }
func (g *Guix) sharePidfile(tag string) string { return g.VM.Path("share-" + tag + ".pid") }
func (g *Guix) shareLog(tag string) string     { return g.VM.Path("share-" + tag + ".log") }

// sshShareIndex returns the index of tag's server in rt, or -1.
func sshShareIndex(rt *Runtime, tag string) int {
	for i, s := range rt.SSHShares {
		if s.Tag == tag {
			return i
		}
	}
	return -1
}

// startSSHShares starts a server for each `mode = "ssh"` share of the
// Vmfile that has no live one (first boot, or its server died: `up`
// restores it) and records them in the runtime record. The VM must be ready
// (SSH answers with the pinned host key).
func (g *Guix) startSSHShares(ctx context.Context, rt *Runtime) error {
	var errs []error
	for _, s := range g.VF.Shares {
		if s.Mode != vmfile.ShareSSH {
			continue
		}
		if i := sshShareIndex(rt, s.Tag); i >= 0 {
			switch v := proc.Check(rt.SSHShares[i].Identity); v.State {
			case proc.Alive:
				continue
			case proc.Unknown:
				errs = append(errs, fmt.Errorf("share %s: cannot tell whether its server still runs (%s); not starting another", s.Guest, v.Reason))
				continue
			default:
				g.UI.Printf("share %s: its server is down (%s); restarting it", s.Guest, v.Reason)
			}
		}
		srv, err := g.startSSHShare(ctx, rt, s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if i := sshShareIndex(rt, s.Tag); i >= 0 {
			rt.SSHShares[i] = *srv
		} else {
			rt.SSHShares = append(rt.SSHShares, *srv)
		}
		if err := state.WriteJSON(g.VM.RuntimeRecord(), rt); err != nil {
			return err
		}
		g.UI.Printf("share %s: mounted in the guest, served over SSH by pid %d (log: %s)", s.Guest, srv.Identity.PID, srv.Log)
	}
	if len(errs) > 0 {
		return fmt.Errorf("VM %q is running, but not every share is mounted:\n%w\nhint: `devvm up` tries again", g.VF.Name, errors.Join(errs...))
	}
	return nil
}

// startSSHShare starts `devvm share-serve` detached for one share and waits
// until it reports the share mounted.
func (g *Guix) startSSHShare(ctx context.Context, rt *Runtime, s vmfile.Share) (*SSHShare, error) {
	fail := func(format string, a ...any) (*SSHShare, error) {
		return nil, fmt.Errorf("share %s: %s", s.Guest, fmt.Sprintf(format, a...))
	}
	exe, err := os.Executable()
	if err != nil {
		return fail("cannot find the devvm executable to run its share server: %v", err)
	}
	t, err := g.target(rt.SSHPort)
	if err != nil {
		return fail("%v", err)
	}
	marker, pidfile, logPath := g.shareMarker(s.Tag), g.sharePidfile(s.Tag), g.shareLog(s.Tag)
	host := g.VF.Resolve(s.Host)
	args := []string{"share-serve", "--addr", t.Addr, "--user", t.User, "--key", t.Key.PrivatePath,
		"--known-hosts", t.KnownHosts, "--host-key-alias", t.HostKeyAlias, "--root", host, "--guest", s.Guest,
		"--pidfile", pidfile, "--marker", marker, "--ready-fd", "3"}
	if s.ReadOnly {
		args = append(args, "--readonly")
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
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
	// Not bound to ctx: the server outlives this command.
	cmd := g.Env.Command(context.Background(), exe, args...)
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
	stop := g.spinner(fmt.Sprintf("mounting %s → %s over SSH", host, s.Guest))
	msg, err := readReady(ctx, r, shareReadyTimeout)
	stop()
	if err != nil {
		abandon()
		return fail("%v\nhint: the server's log is %s", err, logPath)
	}
	if msg != "ready" {
		abandon()
		if msg == "" {
			msg = "its server exited without a word; " + logTail(logPath)
		}
		return fail("%s\nhint: the server's log is %s", msg, logPath)
	}
	id, err := proc.Capture(cmd.Process.Pid, marker, pidfile)
	if err != nil {
		abandon()
		return fail("its server (pid %d) cannot be verified: %v", cmd.Process.Pid, err)
	}
	cmd.Process.Release()
	return &SSHShare{Tag: s.Tag, Host: host, Guest: s.Guest, ReadOnly: s.ReadOnly, Identity: id, Log: logPath, Started: g.Env.Now()}, nil
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
	b, err := os.ReadFile(path)
	if err != nil {
		return "no log: " + err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return "its log ends with:\n  " + strings.Join(lines, "\n  ")
}

// stopSSHShares stops the recorded share servers: SIGTERM (the server
// unmounts in the guest), then SIGKILL after shareStopTimeout. A server
// that proc.Check does not prove to be ours is never signalled.
func (g *Guix) stopSSHShares(ctx context.Context, rt *Runtime) {
	for _, s := range rt.SSHShares {
		id := s.Identity
		if err := proc.Signal(id, syscall.SIGTERM); err != nil {
			var na *proc.NotAliveError
			if !errors.As(err, &na) {
				g.UI.Printf("share %s: could not stop its server: %v", s.Guest, err)
			} else if na.Verdict.State != proc.Gone {
				g.UI.Printf("share %s: not stopping pid %d: %s", s.Guest, id.PID, na.Verdict.Reason)
			}
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, shareStopTimeout)
		err := proc.WaitGone(wctx, id, gonePoll)
		cancel()
		if err == nil {
			continue
		}
		g.UI.Printf("share %s: its server (pid %d) ignored SIGTERM; killing it", s.Guest, id.PID)
		if err := proc.Signal(id, syscall.SIGKILL); err == nil {
			kctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			proc.WaitGone(kctx, id, gonePoll)
			cancel()
		}
	}
}

// sshShareStatus describes the state of each `mode = "ssh"` share of a
// ready VM for `devvm status`.
func (g *Guix) sshShareStatus(rt *Runtime) []string {
	if !rt.Ready {
		return nil
	}
	var lines []string
	for _, s := range g.VF.Shares {
		if s.Mode != vmfile.ShareSSH {
			continue
		}
		i := sshShareIndex(rt, s.Tag)
		switch {
		case i < 0:
			lines = append(lines, fmt.Sprintf("share %s: DOWN (no server was started): run `devvm up` to restore", s.Guest))
		case proc.Check(rt.SSHShares[i].Identity).State == proc.Alive:
			lines = append(lines, fmt.Sprintf("share %s: served over SSH by pid %d", s.Guest, rt.SSHShares[i].Identity.PID))
		default:
			lines = append(lines, fmt.Sprintf("share %s: DOWN (server exited): run `devvm up` to restore (its log: %s)", s.Guest, rt.SSHShares[i].Log))
		}
	}
	return lines
}
