package machine

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/proc"
	"github.com/devvm/devvm/launcher/sshx"
	"github.com/devvm/devvm/launcher/state"
)

// Halt implements backend.Backend.
func (mg *Manager) Halt(ctx context.Context, names []string, opts backend.HaltOptions) error {
	return mg.locked(names, "devvm halt", func(m *Machine) error { return mg.halt(ctx, m, opts) })
}

func (mg *Manager) halt(ctx context.Context, m *Machine, opts backend.HaltOptions) error {
	o, err := mg.observe(ctx, m)
	if err != nil {
		return err
	}
	if o.state == backend.Stopped {
		mg.cleanStale(ctx, m, o)
		mg.ui.Printf("VM %q is not running", m.Name)
		return nil
	}
	return mg.haltRecord(ctx, m, o.rec, opts)
}

// haltRecord is the one halt ladder of every backend, bounded by
// opts.Timeout (backend.DefaultHaltTimeout when 0):
//
//  1. the guest powers itself off over SSH (PowerOffer), waiting up to 60 %
//     of the budget;
//  2. the driver's own stops in order (QMP system_powerdown, microvm-shutdown,
//     systemctl stop), each waiting until its Reserve is left;
//  3. a local process gets SIGTERM, waiting until 1 s is left, then SIGKILL.
//
// Force skips 1 and 2. Each wait ends as soon as the machine has stopped,
// and only then: a local process counts as gone when its pid has exited (or
// is another process), never because its pidfile lock went away during
// shutdown. Share servers are stopped first, while the guest still runs, so
// they unmount.
func (mg *Manager) haltRecord(ctx context.Context, m *Machine, rec *Record, opts backend.HaltOptions) error {
	total := opts.Timeout
	if total <= 0 {
		total = backend.DefaultHaltTimeout
	}
	start := mg.env.Now()
	budget := func(frac float64, reserve time.Duration) time.Time {
		d := time.Duration(float64(total)*frac) - reserve
		if d < time.Second {
			d = time.Second
		}
		return start.Add(d)
	}
	gone := mg.stoppedCheck(ctx, m, rec)
	waitUntil := func(t time.Time) bool {
		poll := remotePoll
		if rec.Process != nil {
			poll = gonePoll
		}
		for {
			if gone() {
				return true
			}
			if !mg.env.Now().Before(t) || ctx.Err() != nil {
				return false
			}
			time.Sleep(poll)
		}
	}
	done := func(how string) error {
		mg.forget(m)
		mg.ui.Printf("VM %q halted (%s) in %.1fs", m.Name, how, mg.env.Now().Sub(start).Seconds())
		return nil
	}
	mg.stopShares(ctx, rec)
	if !opts.Force {
		if p, ok := mg.d.(PowerOffer); ok && rec.Ready {
			if err := mg.sshPowerOff(ctx, m, rec, p.PowerOffCommand()); err != nil {
				mg.ui.Printf("graceful halt over SSH failed (%v); trying the next way", err)
			} else if waitUntil(budget(0.6, 0)) {
				return done("guest powered off over SSH")
			}
		}
		for _, st := range mg.d.Stops(m, rec) {
			if err := st.Do(ctx); err != nil {
				mg.ui.Printf("%s failed (%v)", st.Name, err)
			} else if waitUntil(budget(1, st.Reserve)) {
				return done(st.Name)
			}
		}
		if rec.Process != nil {
			mg.ui.Printf("the guest did not power off; stopping its process")
		}
	}
	if rec.Process == nil {
		if gone() {
			return done("stopped")
		}
		return fmt.Errorf("VM %q is still running after every way to stop it; look at `devvm logs %s`", m.Name, m.Name)
	}
	id := mg.identity(m, rec)
	if err := proc.Signal(id, syscall.SIGTERM); err != nil {
		if gone() {
			return done("its process had already exited")
		}
		if proc.Check(id).State != proc.Foreign {
			return err
		}
		// Ours, but unprovable by its pidfile any more (shutting down): wait.
	}
	if waitUntil(budget(1, time.Second)) {
		return done("process stopped by SIGTERM")
	}
	if err := proc.Signal(id, syscall.SIGKILL); err != nil && !gone() && proc.Check(id).State == proc.Alive {
		return err
	}
	if waitUntil(mg.env.Now().Add(2 * time.Second)) {
		return done("process killed")
	}
	return fmt.Errorf("the process of VM %q (pid %d) survived SIGKILL; is it stuck in the kernel (D state)? check `ps -o stat= -p %d`", m.Name, id.PID, id.PID)
}

// stoppedCheck returns what tells that the machine has stopped: its
// process is no longer the one devvm started (exited, or its pid is another
// process; a lost pidfile lock does not count), or (no local process) the
// driver probes it stopped.
func (mg *Manager) stoppedCheck(ctx context.Context, m *Machine, rec *Record) func() bool {
	if rec.Process != nil {
		id := mg.identity(m, rec)
		return func() bool { return !proc.Ours(id) }
	}
	return func() bool { return mg.d.Probe(ctx, m, rec).State == backend.Stopped }
}

// sshPowerOff runs the guest's power-off command with a short bound; the
// connection dropping under the command is expected.
func (mg *Manager) sshPowerOff(ctx context.Context, m *Machine, rec *Record, command string) error {
	t, err := mg.d.Target(m, rec)
	if err != nil {
		return err
	}
	// An OpenSSH guest under TCG on a loaded host can take well over 5 s
	// to complete a handshake; giving up early would mean a power cut.
	t.HandshakeTimeout = 20 * time.Second
	ctx, cancel := context.WithTimeout(ctx, 25*time.Second)
	defer cancel()
	c, err := sshx.Dial(ctx, *t)
	if err != nil {
		return err
	}
	defer c.Close()
	var out strings.Builder
	code, err := c.Run(ctx, command, nil, &out, &out, false)
	if err == nil && code != 0 {
		return fmt.Errorf("`%s` exited with %d: %s", command, code, strings.TrimSpace(out.String()))
	}
	return nil
}

// Destroy implements backend.Backend: halt, then remove everything devvm
// keeps for the machine. It asks first (on a terminal; elsewhere it needs
// opts.Yes) when the machine runs or has a persistent disk.
func (mg *Manager) Destroy(ctx context.Context, names []string, opts backend.DestroyOptions) error {
	ms, unlock, err := mg.pickLocked(names, "devvm destroy")
	if err != nil {
		return err
	}
	defer unlock()
	for _, m := range ms {
		o, err := mg.observe(ctx, m)
		if err != nil {
			return err
		}
		disks, _ := filepath.Glob(m.VM.Path("disk-*.qcow2"))
		var what []string
		if o.state != backend.Stopped {
			what = append(what, "it is running")
		}
		if len(disks) > 0 {
			what = append(what, fmt.Sprintf("its persistent disk (%s) will be deleted with everything written in the guest", strings.Join(disks, ", ")))
		}
		if marker, _ := mg.d.Identity(m); marker == "" {
			what = append(what, "its state on the hypervisor will be deleted")
		}
		if len(what) > 0 && !opts.Yes {
			q := fmt.Sprintf("destroy VM %q? %s", m.Name, strings.Join(what, "; "))
			if mg.ui.In == nil {
				return fmt.Errorf("not destroying VM %q without confirmation: %s\nhint: `devvm destroy --yes %s` confirms (no terminal to ask on)", m.Name, strings.Join(what, "; "), m.Name)
			}
			if !mg.ui.Confirm(q) {
				return fmt.Errorf("VM %q not destroyed", m.Name)
			}
		}
		if o.state != backend.Stopped {
			if err := mg.haltRecord(ctx, m, o.rec, backend.HaltOptions{Force: opts.Force}); err != nil {
				return fmt.Errorf("%v\nnothing was deleted", err)
			}
		} else if o.rec != nil {
			mg.stopShares(ctx, o.rec)
		}
		if err := mg.d.Clean(ctx, m); err != nil {
			return err
		}
		var rep *backend.GCReport
		if opts.GC {
			// Every build of the machine goes: nothing is kept.
			if rep, err = mg.d.GC(ctx, []GCTarget{{M: m}}, backend.GCOptions{}); err != nil {
				return err
			}
		}
		mg.forget(m)
		if err := m.VM.Remove(); err != nil {
			return err
		}
		if err := state.OpenRegistry(mg.env.StateDir).Remove(m.VM.ID()); err != nil {
			mg.ui.Printf("warning: could not update the VM registry: %v", err)
		}
		mg.ui.Printf("VM %q destroyed: its state, disks, keys, logs and GC roots are gone", m.Name)
		if rep != nil && rep.StoreGC {
			mg.ui.Printf("the store's garbage collection freed %s", backend.HumanBytes(rep.FreedBytes))
		}
	}
	return nil
}

// GC implements backend.Backend: the driver removes the builds no machine
// uses any more (neither its last build nor what its running process
// booted), under the lock of every machine.
func (mg *Manager) GC(ctx context.Context, opts backend.GCOptions) (*backend.GCReport, error) {
	ms, unlock, err := mg.pickLocked(nil, "devvm gc")
	if err != nil {
		return nil, err
	}
	defer unlock()
	var ts []GCTarget
	for _, m := range ms {
		t := GCTarget{M: m, Keep: map[string]bool{}}
		if b, _ := lastBuild(m); b != nil {
			t.Keep[b.Key] = true
		}
		o, err := mg.observe(ctx, m)
		if err != nil {
			return nil, err
		}
		if o.rec != nil && o.state != backend.Stopped && o.rec.BuildKey != "" {
			t.Keep[o.rec.BuildKey] = true
		}
		ts = append(ts, t)
	}
	return mg.d.GC(ctx, ts, opts)
}
