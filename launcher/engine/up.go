package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/proc"
	"github.com/devvm/devvm/launcher/qemu"
	"github.com/devvm/devvm/launcher/sshx"
	"github.com/devvm/devvm/launcher/state"
	"github.com/devvm/devvm/launcher/vmfile"
)

// readyPoll is how often `up` tries SSH while the guest boots.
const readyPoll = 200 * time.Millisecond

// Up implements backend.Backend.
func (g *Guix) Up(ctx context.Context, names []string, opts backend.UpOptions) error {
	if err := g.checkNames(names); err != nil {
		return err
	}
	lk, err := g.VM.Lock("devvm up")
	if err != nil {
		return err
	}
	defer lk.Unlock()

	o, err := g.observe(ctx)
	if err != nil {
		return err
	}
	switch o.state {
	case backend.Running, backend.Starting:
		msg := fmt.Sprintf("VM %q is already running (pid %d, ssh 127.0.0.1:%d)", g.VF.Name, o.rt.Identity.PID, o.rt.SSHPort)
		if key, err := g.CurrentKey(); err == nil && key != o.rt.BuildKey {
			msg += "; it is outdated (its inputs changed since boot): run `devvm reload`"
		}
		g.UI.Printf("%s", msg)
		if o.state == backend.Starting {
			if err := g.waitReady(ctx, o.rt, opts); err != nil {
				return err
			}
		}
		return g.startSSHShares(ctx, o.rt)
	case backend.Broken:
		return fmt.Errorf("VM %q is broken: %s\nhint: `devvm halt` stops it (escalating as needed), then `devvm up`", g.VF.Name, o.reason)
	}
	g.cleanStale(o)
	if g.VF.SSHPortPinned {
		// A busy pinned port fails before anything is built or started.
		if _, err := qemu.PickSSHPort(g.VF.SSH.Port, true); err != nil {
			return g.VF.KeyError("ssh.port", "%v", err)
		}
	}

	rec, err := g.build(ctx, opts.BuildOptions)
	if err != nil {
		return err
	}
	rt, argv, err := g.prepare(rec, opts.Foreground)
	if err != nil {
		return err
	}
	if opts.Foreground {
		return g.runForeground(ctx, rt, argv, opts)
	}
	if err := g.start(ctx, rt, argv); err != nil {
		return err
	}
	if err := g.waitReady(ctx, rt, opts); err != nil {
		return err
	}
	return g.startSSHShares(ctx, rt)
}

// prepare chooses accelerator and port, readies the disk and builds the
// QEMU command line.
func (g *Guix) prepare(rec *BuildRecord, foreground bool) (*Runtime, []string, error) {
	script, err := qemu.ParseRunVM(rec.RunVM)
	if err != nil {
		return nil, nil, err
	}
	kvm := g.Env.KVM()
	accel := "kvm"
	if !kvm.Usable {
		accel = "tcg"
		g.UI.Printf("warning: KVM is not usable (%s); running under TCG, which is much slower", kvm.Reason)
	}
	port, err := qemu.PickSSHPort(g.VF.SSH.Port, g.VF.SSHPortPinned)
	if err != nil {
		if g.VF.SSHPortPinned {
			return nil, nil, g.VF.KeyError("ssh.port", "%v", err)
		}
		return nil, nil, err
	}
	if port != g.VF.SSH.Port {
		g.UI.Printf("port %d is in use%s; using %d for SSH (pin ssh.port in the Vmfile to forbid this)", g.VF.SSH.Port, portOwner(g.VF.SSH.Port), port)
	}
	for _, f := range g.VF.Forwards {
		if f.Proto == "tcp" && !qemu.PortFree(f.Bind, f.Host) {
			return nil, nil, fmt.Errorf("%s: forward %s:%d → guest %d: the host port is in use%s; change the forward's host port in the Vmfile",
				g.VF.Path, f.Bind, f.Host, f.Guest, portOwner(f.Host))
		}
	}
	rt := &Runtime{Accel: accel, SSHPort: port, QMP: g.VM.QMPSocket(), BuildKey: rec.Key, RunVM: rec.RunVM, Foreground: foreground}
	cfg := qemu.Config{
		RunVM: script, KVM: kvm.Usable, MemoryMiB: g.VF.Memory.MiB(), CPUs: g.VF.CPUs, SSHPort: port,
		Marker: g.VM.Marker(), QMP: g.VM.QMPSocket(), Pidfile: g.VM.Pidfile(),
		ConsoleSocket: g.VM.ConsoleSocket(), ConsoleLog: g.VM.ConsoleLog(), Foreground: foreground,
	}
	if !foreground {
		rt.Console = g.VM.ConsoleSocket()
	}
	for _, f := range g.VF.Forwards {
		cfg.Forwards = append(cfg.Forwards, qemu.Forward{Proto: f.Proto, Bind: f.Bind, Host: f.Host, Guest: f.Guest})
		rt.Forwards = append(rt.Forwards, fmt.Sprintf("%s:%d → %d/%s", f.Bind, f.Host, f.Guest, f.Proto))
	}
	for _, s := range g.VF.Shares {
		if s.Mode != vmfile.ShareVirtio {
			continue
		}
		cfg.Shares = append(cfg.Shares, qemu.Share{Path: g.VF.Resolve(s.Host), Tag: s.Tag, ReadOnly: s.ReadOnly})
		mode := "rw"
		if s.ReadOnly {
			mode = "ro"
		}
		rt.Shares = append(rt.Shares, fmt.Sprintf("%s → %s (%s)", g.VF.Resolve(s.Host), s.Guest, mode))
	}
	if script.Persistent {
		disk, err := g.prepareDisk(script, rec.Key)
		if err != nil {
			return nil, nil, err
		}
		cfg.Disk, rt.Disk = disk, disk
	}
	argv, err := qemu.Argv(cfg)
	if err != nil {
		return nil, nil, err
	}
	rt.Argv = argv
	return rt, argv, nil
}

func portOwner(port int) string {
	if o := qemu.PortOwner(port); o != "" {
		return " by " + o
	}
	return ""
}

// prepareDisk creates the persistent overlay of this build under .devvm
// (instead of guix's shared /tmp/guix-image-* that nobody cleans).
func (g *Guix) prepareDisk(script *qemu.RunVM, key string) (string, error) {
	disk := g.VM.Disk(key)
	if _, err := os.Stat(disk); err == nil {
		return disk, nil
	}
	backing, err := qemu.OverlayBacking(script)
	if err != nil {
		return "", err
	}
	if others, _ := filepath.Glob(g.VM.Path("disk-*.qcow2")); len(others) > 0 {
		g.UI.Printf("note: this build starts with a new persistent disk; the disk of the previous build stays at %s until `devvm gc`", strings.Join(others, ", "))
	}
	out, err := g.Env.Command(context.Background(), "qemu-img", "create", "-q", "-f", "qcow2", "-b", backing, "-F", "raw", disk).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("creating the persistent disk %s: %v: %s (is qemu-img installed? `devvm doctor`)", disk, err, strings.TrimSpace(string(out)))
	}
	return disk, nil
}

// start launches QEMU detached, records its identity and registers the VM.
func (g *Guix) start(ctx context.Context, rt *Runtime, argv []string) error {
	g.UI.Printf("starting QEMU (%s)", rt.Accel)
	os.Remove(g.VM.ConsoleLog())
	var pid int
	var err error
	for attempt := 0; ; attempt++ {
		pid, err = qemu.StartDetached(ctx, g.Env.Command, argv, g.VM.Pidfile())
		if err == nil || !qemu.HostfwdBusy(err) || g.VF.SSHPortPinned || attempt > 3 {
			break
		}
		// Lost a race for the port: take the next free one.
		port, perr := qemu.PickSSHPort(rt.SSHPort+1, false)
		if perr != nil {
			break
		}
		argv = replacePort(argv, rt.SSHPort, port)
		rt.SSHPort, rt.Argv = port, argv
	}
	if err != nil {
		return fmt.Errorf("%v\nhint: the full command line is in %s; `devvm doctor` checks QEMU", err, g.VM.Path("qemu.argv"))
	}
	os.WriteFile(g.VM.Path("qemu.argv"), []byte(strings.Join(argv, "\n")+"\n"), 0o644)
	id, err := proc.Capture(pid, g.VM.Marker(), g.VM.Pidfile())
	if err != nil {
		return fmt.Errorf("QEMU started as pid %d but devvm cannot verify it: %v", pid, err)
	}
	rt.Identity, rt.Started = id, g.Env.Now()
	if err := state.WriteJSON(g.VM.RuntimeRecord(), rt); err != nil {
		return err
	}
	g.UI.Printf("QEMU is running as pid %d; serial console: %s", pid, g.VM.ConsoleLog())
	return state.OpenRegistry(g.Env.StateDir).Add(state.Entry{ID: g.VM.ID(), Name: g.VF.Name, Backend: g.Kind(),
		Checkout: g.VF.Dir, Added: g.Env.Now()})
}

func replacePort(argv []string, old, port int) []string {
	out := append([]string(nil), argv...)
	for i, a := range out {
		out[i] = strings.Replace(a, fmt.Sprintf("hostfwd=tcp:127.0.0.1:%d-:22", old), fmt.Sprintf("hostfwd=tcp:127.0.0.1:%d-:22", port), 1)
	}
	return out
}

// target is how devvm reaches this VM's sshd.
func (g *Guix) target(rt *Runtime) (*sshx.Target, error) {
	k, err := g.userKey()
	if err != nil {
		return nil, err
	}
	return &sshx.Target{
		Addr: fmt.Sprintf("127.0.0.1:%d", rt.SSHPort), User: g.VF.SSH.User, Key: k,
		KnownHosts: g.VM.KnownHosts(), HostKeyAlias: "devvm-" + g.VF.Name,
		AgentForward: g.VF.SSH.ForwardAgent, HandshakeTimeout: 10 * time.Second,
		Ciphers: rt.ciphers(),
	}, nil
}

// waitReady waits until SSH accepts our key, pins the host key of this
// boot, and writes ssh_config. It fails early when QEMU dies.
func (g *Guix) waitReady(ctx context.Context, rt *Runtime, opts backend.UpOptions) error {
	timeout := g.VF.BootTimeout.D()
	if opts.Timeout > 0 {
		timeout = opts.Timeout
	}
	t, err := g.target(rt)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, errBootTimeout)
	defer cancel()
	stop := g.spinner(fmt.Sprintf("waiting for SSH on 127.0.0.1:%d", rt.SSHPort))
	c, died, err := backend.WaitSSH(ctx, *t, rt.Identity, readyPoll)
	stop()
	if err != nil {
		if died != "" {
			g.forget()
			return fmt.Errorf("QEMU exited while the guest booted (%s)\n%s", died, backend.ConsoleTail(g.VM.ConsoleLog(), 20))
		}
		if errors.Is(context.Cause(ctx), errBootTimeout) {
			return fmt.Errorf("the guest did not accept SSH within %s (last error: %v)\n%s\nhint: the VM is still running: `devvm console` to look at it, `devvm halt` to stop it; `devvm up --timeout 20m` waits longer",
				timeout, err, backend.ConsoleTail(g.VM.ConsoleLog(), 20))
		}
		return err
	}
	c.Close()
	rt.Ready = true
	if err := state.WriteJSON(g.VM.RuntimeRecord(), rt); err != nil {
		return err
	}
	if err := g.writeSSHConfig(rt); err != nil {
		return err
	}
	g.UI.Printf("VM %q is ready: `devvm ssh` (or ssh -F %s devvm-%s)", g.VF.Name, g.VM.SSHConfig(), g.VF.Name)
	return nil
}

var errBootTimeout = errors.New("boot timeout")

// spinner shows a phase with elapsed time on a terminal, or one line
// otherwise. The returned func ends it.
func (g *Guix) spinner(what string) func() {
	start := g.Env.Now()
	if !g.UI.Terminal {
		g.UI.Printf("%s", what)
		return func() { g.UI.Printf("%s: done after %.1fs", what, g.Env.Now().Sub(start).Seconds()) }
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
				fmt.Fprintf(g.UI.Err, "\r\033[Kdevvm: %s: %.1fs\n", what, g.Env.Now().Sub(start).Seconds())
				return
			case <-tk.C:
				fmt.Fprintf(g.UI.Err, "\r\033[Kdevvm: %s %c %.0fs", what, frames[i%4], g.Env.Now().Sub(start).Seconds())
			}
		}
	}()
	return func() { close(done); <-finished }
}

// runForeground runs QEMU with the serial console on this terminal; the
// VM stops when the command ends. Ctrl-C goes to the guest; Ctrl-a x quits
// QEMU; SIGTERM/SIGHUP to devvm halt the guest gracefully.
func (g *Guix) runForeground(ctx context.Context, rt *Runtime, argv []string, opts backend.UpOptions) error {
	g.UI.Printf("starting QEMU (%s) in the foreground: Ctrl-a x quits, Ctrl-a h for help", rt.Accel)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	signal.Ignore(syscall.SIGINT, syscall.SIGQUIT)
	defer signal.Reset(syscall.SIGINT, syscall.SIGQUIT)
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(term)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting QEMU: %w", err)
	}
	// QEMU puts the terminal in raw mode: end devvm's lines with \r\n (set
	// once, before the goroutines below use the UI; the command ends with QEMU).
	g.UI.Err = crlfWriter{g.UI.Err}
	defer g.forget()
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	// Record the identity once QEMU has written its pidfile.
	for i := 0; i < 100; i++ {
		if pid, _ := proc.PidfileLockHolder(g.VM.Pidfile()); pid == cmd.Process.Pid {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if id, err := proc.Capture(cmd.Process.Pid, g.VM.Marker(), g.VM.Pidfile()); err == nil {
		rt.Identity, rt.Started = id, g.Env.Now()
		state.WriteJSON(g.VM.RuntimeRecord(), rt)
		state.OpenRegistry(g.Env.StateDir).Add(state.Entry{ID: g.VM.ID(), Name: g.VF.Name, Backend: g.Kind(), Checkout: g.VF.Dir, Added: g.Env.Now()})
		go func() {
			if g.readyQuiet(ctx, rt, opts) == nil {
				rt.Ready = true
				state.WriteJSON(g.VM.RuntimeRecord(), rt)
				if err := g.startSSHShares(ctx, rt); err != nil {
					g.UI.Printf("%v", err)
				}
			}
		}()
	}
	for {
		select {
		case err := <-waitErr:
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.ExitCode() > 0 {
				return fmt.Errorf("QEMU exited with status %d", ee.ExitCode())
			}
			return nil
		case <-term:
			g.haltRuntime(context.Background(), rt, backend.HaltOptions{Timeout: DefaultHaltTimeout})
		}
	}
}

// readyQuiet pins the host key of a foreground boot without printing.
func (g *Guix) readyQuiet(ctx context.Context, rt *Runtime, opts backend.UpOptions) error {
	t, err := g.target(rt)
	if err != nil {
		return err
	}
	timeout := g.VF.BootTimeout.D()
	if opts.Timeout > 0 {
		timeout = opts.Timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := sshx.WaitReady(ctx, *t, readyPoll, true)
	if err != nil {
		return err
	}
	c.Close()
	return g.writeSSHConfig(rt)
}

// writeSSHConfig writes .devvm/<vm>/ssh_config for OpenSSH, scp, rsync and
// editors.
func (g *Guix) writeSSHConfig(rt *Runtime) error {
	text, err := g.SSHConfigText(rt)
	if err != nil {
		return err
	}
	return state.WriteFileAtomic(g.VM.SSHConfig(), []byte(text), 0o644)
}

// SSHConfigText renders the OpenSSH stanza of this VM.
func (g *Guix) SSHConfigText(rt *Runtime) (string, error) {
	k, err := g.userKey()
	if err != nil {
		return "", err
	}
	return sshx.SSHConfig(sshx.ConfigOptions{
		Host: "devvm-" + g.VF.Name, HostName: "127.0.0.1", Port: fmt.Sprint(rt.SSHPort), User: g.VF.SSH.User,
		IdentityFile: k.PrivatePath, KnownHosts: g.VM.KnownHosts(), HostKeyAlias: "devvm-" + g.VF.Name,
		ForwardAgent: g.VF.SSH.ForwardAgent, Ciphers: rt.ciphers(),
	})
}

// SSHConfig implements backend.Backend.
func (g *Guix) SSHConfig(ctx context.Context, name string) (string, error) {
	if _, err := g.SSHTarget(ctx, name); err != nil {
		return "", err
	}
	o, err := g.observe(ctx)
	if err != nil || o.rt == nil {
		return "", fmt.Errorf("VM %q is not running: start it with `devvm up`", g.VF.Name)
	}
	return g.SSHConfigText(o.rt)
}

// SSHTarget implements backend.Backend.
func (g *Guix) SSHTarget(ctx context.Context, name string) (*sshx.Target, error) {
	if err := g.checkNames([]string{name}); err != nil {
		return nil, err
	}
	o, err := g.observe(ctx)
	if err != nil {
		return nil, err
	}
	switch o.state {
	case backend.Stopped:
		return nil, fmt.Errorf("VM %q is not running: start it with `devvm up`", g.VF.Name)
	case backend.Broken:
		return nil, fmt.Errorf("VM %q is broken: %s\nhint: `devvm halt` then `devvm up`", g.VF.Name, o.reason)
	case backend.Starting:
		return nil, fmt.Errorf("VM %q is still booting (SSH has not answered yet): wait for `devvm up` to finish", g.VF.Name)
	}
	return g.target(o.rt)
}

// crlfWriter turns \n into \r\n for a terminal in raw mode.
type crlfWriter struct{ w io.Writer }

func (c crlfWriter) Write(p []byte) (int, error) {
	if _, err := c.w.Write(bytes.ReplaceAll(p, []byte("\n"), []byte("\r\n"))); err != nil {
		return 0, err
	}
	return len(p), nil
}
