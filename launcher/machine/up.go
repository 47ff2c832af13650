package machine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/sshx"
	"github.com/devvm/devvm/launcher/state"
)

// Build implements backend.Backend.
func (mg *Manager) Build(ctx context.Context, opts backend.BuildOptions) error {
	ms, unlock, err := mg.pickLocked(nil, "devvm build")
	if err != nil {
		return err
	}
	defer unlock()
	if err := mg.prepare(ctx, ms); err != nil {
		return err
	}
	for _, m := range ms {
		if pb, ok := mg.d.(Prebuilder); ok {
			if err := pb.Prebuild(ctx, m); err != nil {
				return err
			}
			continue
		}
		if _, err := mg.build(ctx, m, opts); err != nil {
			return err
		}
	}
	return nil
}

func (mg *Manager) prepare(ctx context.Context, ms []*Machine) error {
	if p, ok := mg.d.(Preparer); ok {
		return p.Prepare(ctx, ms)
	}
	return nil
}

// lastBuild reads build.json.
func lastBuild(m *Machine) (*Build, error) {
	var b Build
	ok, err := state.ReadJSON(m.VM.BuildRecord(), &b)
	if err != nil || !ok {
		return nil, err
	}
	return &b, nil
}

// build runs the driver's build over the last one and records the result.
func (mg *Manager) build(ctx context.Context, m *Machine, opts backend.BuildOptions) (*Build, error) {
	if err := m.VM.Ensure(); err != nil {
		return nil, err
	}
	prev, err := lastBuild(m)
	if err != nil {
		return nil, err
	}
	b, err := mg.d.Build(ctx, m, prev, opts)
	if err != nil {
		return nil, err
	}
	if b != prev {
		if err := state.WriteJSON(m.VM.BuildRecord(), b); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// Up implements backend.Backend.
func (mg *Manager) Up(ctx context.Context, names []string, opts backend.UpOptions) error {
	ms, err := mg.pick(names)
	if err != nil {
		return err
	}
	if opts.Foreground && len(ms) != 1 {
		return fmt.Errorf("--foreground runs one VM: name it")
	}
	unlock, err := mg.lock(ms, "devvm up")
	if err != nil {
		return err
	}
	released := false
	release := func() {
		if !released {
			released = true
			unlock()
		}
	}
	defer release()
	if err := mg.prepare(ctx, ms); err != nil {
		return err
	}
	done := map[string][]string{}
	for _, m := range ms {
		if opts.Foreground {
			return mg.upForeground(ctx, m, opts, release)
		}
		what, err := mg.up(ctx, m, opts)
		if err != nil {
			return err
		}
		done[what] = append(done[what], m.Name)
	}
	if u, ok := mg.d.(Updater); ok && u.UpdatesRunning() {
		mg.ui.Printf("deployed: restarted %s; started %s; unchanged %s", List(done[upRestarted]), List(done[upStarted]), List(done[upUnchanged]))
	}
	return nil
}

// What up did to a machine.
const (
	upStarted   = "started"
	upRestarted = "restarted"
	upUnchanged = "unchanged"
)

// List renders names for a message ("none" when empty).
func List(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func (mg *Manager) up(ctx context.Context, m *Machine, opts backend.UpOptions) (string, error) {
	o, err := mg.observe(ctx, m)
	if err != nil {
		return "", err
	}
	switch o.state {
	case backend.Running, backend.Starting:
		if u, ok := mg.d.(Updater); ok && u.UpdatesRunning() {
			return mg.update(ctx, m, o, opts)
		}
		msg := fmt.Sprintf("VM %q is already running (ssh %s:%d)", m.Name, o.rec.SSHHost, o.rec.SSHPort)
		if o.rec.Process != nil {
			msg = fmt.Sprintf("VM %q is already running (pid %d, ssh %s:%d)", m.Name, o.rec.Process.PID, o.rec.SSHHost, o.rec.SSHPort)
		}
		if why := mg.d.Outdated(ctx, m, o.rec); why != "" {
			msg += "; it is outdated (" + why + "): run `devvm reload " + m.Name + "`"
		}
		mg.ui.Printf("%s", msg)
		if o.state == backend.Starting {
			if err := mg.waitReady(ctx, m, o.rec, opts.Timeout, true); err != nil {
				return "", err
			}
		}
		return upUnchanged, mg.startShares(ctx, m, o.rec)
	case backend.Broken:
		return "", mg.errNotRunning(m, o)
	}
	b, err := mg.prepareBoot(ctx, m, o, opts.BuildOptions)
	if err != nil {
		return "", err
	}
	return upStarted, mg.boot(ctx, m, b, opts.Timeout, true)
}

// prepareBoot readies a stopped machine for a boot: its stale record goes,
// the driver's early checks pass, and its build is current.
func (mg *Manager) prepareBoot(ctx context.Context, m *Machine, o observed, opts backend.BuildOptions) (*Build, error) {
	mg.cleanStale(ctx, m, o)
	if err := mg.d.Preflight(ctx, m); err != nil {
		return nil, err
	}
	return mg.build(ctx, m, opts)
}

// boot starts b detached, records it, and waits until it is ready.
func (mg *Manager) boot(ctx context.Context, m *Machine, b *Build, timeout time.Duration, fresh bool) error {
	os.Remove(m.VM.ConsoleLog())
	rec, err := mg.d.Start(ctx, m, b, false)
	if err != nil {
		return err
	}
	if rec.Started.IsZero() {
		rec.Started = mg.env.Now()
	}
	if err := mg.save(m, rec); err != nil {
		return err
	}
	mg.register(m)
	if err := mg.waitReady(ctx, m, rec, timeout, fresh); err != nil {
		return err
	}
	return mg.startShares(ctx, m, rec)
}

// update deploys a running machine's current inputs and restarts it when
// the build changed or it runs an older one (Updater drivers).
func (mg *Manager) update(ctx context.Context, m *Machine, o observed, opts backend.UpOptions) (string, error) {
	b, err := mg.build(ctx, m, opts.BuildOptions)
	if err != nil {
		return "", err
	}
	if b.Restarted {
		mg.stopShares(ctx, o.rec)
		if err := mg.waitReady(ctx, m, o.rec, opts.Timeout, true); err != nil {
			return "", err
		}
		return upRestarted, mg.startShares(ctx, m, o.rec)
	}
	if why := mg.d.Outdated(ctx, m, o.rec); why == "" && !b.Changed {
		if !o.rec.Ready {
			if err := mg.waitReady(ctx, m, o.rec, opts.Timeout, false); err != nil {
				return "", err
			}
		}
		return upUnchanged, mg.startShares(ctx, m, o.rec)
	}
	return upRestarted, mg.restartRecord(ctx, m, o.rec, b, opts.Timeout)
}

// restartRecord restarts a running machine from b: in one step when the
// driver can (Restarter), else by a halt and a boot.
func (mg *Manager) restartRecord(ctx context.Context, m *Machine, rec *Record, b *Build, timeout time.Duration) error {
	r, ok := mg.d.(Restarter)
	if !ok {
		if err := mg.haltRecord(ctx, m, rec, backend.HaltOptions{}); err != nil {
			return err
		}
		return mg.boot(ctx, m, b, timeout, true)
	}
	mg.stopShares(ctx, rec)
	nrec, err := r.RestartMachine(ctx, m, b)
	if err != nil {
		return err
	}
	if err := mg.save(m, nrec); err != nil {
		return err
	}
	if err := mg.waitReady(ctx, m, nrec, timeout, true); err != nil {
		return err
	}
	return mg.startShares(ctx, m, nrec)
}

// waitReady waits until SSH accepts devvm's key, pins the host key of this
// boot (fresh) or checks the pinned one, and writes ssh_config. It ends
// early when the machine's process dies or its sshd refuses the key.
func (mg *Manager) waitReady(ctx context.Context, m *Machine, rec *Record, timeout time.Duration, fresh bool) error {
	if timeout <= 0 {
		timeout = mg.vf.BootTimeout.D()
	}
	t, err := mg.d.Target(m, rec)
	if err != nil {
		return err
	}
	if _, err := os.Stat(t.KnownHosts); err != nil {
		fresh = true
	}
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, errBootTimeout)
	defer cancel()
	stop := mg.ui.Phase(fmt.Sprintf("waiting for SSH of %s on %s", m.Name, t.Addr))
	start := mg.env.Now()
	c, died, err := mg.waitSSH(ctx, m, rec, *t, fresh)
	stop()
	if err != nil {
		switch {
		case died != "":
			mg.forget(m)
			return fmt.Errorf("VM %q exited while it booted (%s)\n%s", m.Name, died, backend.ConsoleTail(m.VM.ConsoleLog(), 20))
		case errors.Is(err, sshx.ErrAuthRefused):
			keys := sshx.OfferedKeys(t)
			rec.LoginRefused = fmt.Sprintf("%v (user %q, keys offered: %s)", err, t.User, strings.Join(keys, "; "))
			mg.save(m, rec)
			hint := fmt.Sprintf("the guest's OS config must authorize one of them for %q (devvm adds its key to the Guix config it builds)", t.User)
			if lh, ok := mg.d.(LoginHinter); ok {
				hint = lh.LoginHint(m, t.User)
			}
			return fmt.Errorf("VM %q runs, but its sshd refuses devvm's login: %v\nkeys devvm offered to %s@%s:\n  %s\nhint: %s; `devvm halt %s` stops the VM",
				m.Name, err, t.User, t.Addr, strings.Join(keys, "\n  "), hint, m.Name)
		case errors.Is(context.Cause(ctx), errBootTimeout):
			return fmt.Errorf("the guest did not accept SSH within %s (last error: %v)\n%s\nhint: the VM is still running: `devvm logs %s` or `devvm console` to look at it, `devvm halt %s` to stop it; `devvm up --timeout 20m` waits longer",
				timeout, err, backend.ConsoleTail(m.VM.ConsoleLog(), 20), m.Name, m.Name)
		}
		return err
	}
	c.Close()
	rec.Ready, rec.LoginRefused = true, ""
	if err := mg.save(m, rec); err != nil {
		return err
	}
	if err := mg.writeSSHConfig(m, rec); err != nil {
		return err
	}
	mg.register(m)
	mg.ui.Printf("VM %q is ready after %.1fs: `devvm ssh %s` (or ssh -F %s %s)", m.Name, mg.env.Now().Sub(start).Seconds(), m.Name, m.VM.SSHConfig(), sshx.HostAlias(m.Name))
	return nil
}

// waitSSH tries SSH until it works, ending at once when the machine's local
// process stops being alive (died says why).
func (mg *Manager) waitSSH(ctx context.Context, m *Machine, rec *Record, t sshx.Target, pin bool) (c *sshx.Client, died string, err error) {
	if rec.Process == nil {
		c, err = sshx.WaitReady(ctx, t, ReadyPoll, pin)
		return c, "", err
	}
	return backend.WaitSSH(ctx, t, mg.identity(m, rec), ReadyPoll, pin)
}

// writeSSHConfig writes the machine's ssh_config for OpenSSH, scp, rsync
// and editors.
func (mg *Manager) writeSSHConfig(m *Machine, rec *Record) error {
	text, err := mg.d.SSHConfig(m, rec)
	if err != nil {
		return err
	}
	return state.WriteFileAtomic(m.VM.SSHConfig(), []byte(text), 0o600)
}

// upForeground boots with the console on this terminal; the VM stops when
// the command ends. The machine's lock is held while it starts and released
// once it runs, so `devvm halt` and `devvm ssh` work from another terminal.
// SIGTERM/SIGHUP to devvm halt the guest gracefully.
func (mg *Manager) upForeground(ctx context.Context, m *Machine, opts backend.UpOptions, release func()) error {
	o, err := mg.observe(ctx, m)
	if err != nil {
		return err
	}
	if o.state != backend.Stopped {
		return fmt.Errorf("VM %q is already running: `devvm halt %s` first", m.Name, m.Name)
	}
	b, err := mg.prepareBoot(ctx, m, o, opts.BuildOptions)
	if err != nil {
		return err
	}
	signal.Ignore(syscall.SIGINT, syscall.SIGQUIT)
	defer signal.Reset(syscall.SIGINT, syscall.SIGQUIT)
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(term)
	os.Remove(m.VM.ConsoleLog())
	rec, err := mg.d.Start(ctx, m, b, true)
	if err != nil {
		return err
	}
	// The hypervisor owns the terminal in raw mode: end lines with \r\n.
	mg.ui.Err = crlfWriter{mg.ui.Err}
	defer mg.forget(m)
	waitErr := make(chan error, 1)
	go func() { waitErr <- rec.wait() }()
	if rec.Started.IsZero() {
		rec.Started = mg.env.Now()
	}
	rec.Foreground = true
	if rec.Process != nil {
		mg.save(m, rec)
		mg.register(m)
	}
	release()
	go func() {
		quiet := *mg
		quiet.ui = &backend.UI{Err: discard{}}
		if quiet.waitReady(ctx, m, rec, opts.Timeout, true) == nil {
			if err := mg.startShares(ctx, m, rec); err != nil {
				mg.ui.Printf("%v", err)
			}
		}
	}()
	for {
		select {
		case err := <-waitErr:
			return foregroundExit(err)
		case <-term:
			if err := mg.haltRecord(context.Background(), m, rec, backend.HaltOptions{}); err != nil {
				mg.ui.Printf("%v", err)
			}
		}
	}
}

// Restart implements backend.Backend: halt, then boot the last build again
// without rebuilding (Updater drivers redeploy instead).
func (mg *Manager) Restart(ctx context.Context, names []string) error {
	return mg.locked(names, "devvm restart", func(m *Machine) error { return mg.restart(ctx, m) })
}

func (mg *Manager) restart(ctx context.Context, m *Machine) error {
	o, err := mg.observe(ctx, m)
	if err != nil {
		return err
	}
	b, err := lastBuild(m)
	if err != nil {
		return err
	}
	if b == nil {
		if b, err = mg.build(ctx, m, backend.BuildOptions{}); err != nil {
			return err
		}
	}
	if o.rec != nil && o.state != backend.Stopped {
		return mg.restartRecord(ctx, m, o.rec, b, 0)
	}
	mg.cleanStale(ctx, m, o)
	return mg.boot(ctx, m, b, 0, true)
}

// Rollback implements backend.Backend: the driver points each machine back
// at its previous build, then it is restarted.
func (mg *Manager) Rollback(ctx context.Context, names []string) error {
	rb, ok := mg.d.(Rollbacker)
	if !ok {
		return fmt.Errorf("%s VMs have no rollback: devvm keeps one build of them; edit the inputs back and `devvm reload`", mg.d.Kind())
	}
	return mg.locked(names, "devvm rollback", func(m *Machine) error {
		b, err := rb.Rollback(ctx, m)
		if err != nil {
			return err
		}
		if err := state.WriteJSON(m.VM.BuildRecord(), b); err != nil {
			return err
		}
		return mg.restart(ctx, m)
	})
}

// Run implements backend.Backend: the machine in the foreground on this
// terminal, in the driver's own way or as `up --foreground`.
func (mg *Manager) Run(ctx context.Context, name string) error {
	r, ok := mg.d.(Runner)
	if !ok {
		return mg.Up(ctx, []string{name}, backend.UpOptions{Foreground: true})
	}
	m, err := mg.one(name)
	if err != nil {
		return err
	}
	unlock, err := mg.lock([]*Machine{m}, "devvm run")
	if err != nil {
		return err
	}
	defer unlock()
	o, err := mg.observe(ctx, m)
	if err != nil {
		return err
	}
	if o.state != backend.Stopped {
		return fmt.Errorf("VM %q is running: `devvm halt %s` first; a second hypervisor would fight over its sockets and disks", m.Name, m.Name)
	}
	return r.Run(ctx, m)
}
