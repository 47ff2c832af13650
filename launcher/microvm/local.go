package microvm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/proc"
	"github.com/devvm/devvm/launcher/qemu"
	"github.com/devvm/devvm/launcher/sshx"
	"github.com/devvm/devvm/launcher/state"
)

// DefaultHaltTimeout bounds a local halt when no timeout is given.
const DefaultHaltTimeout = 60 * time.Second

// local runs the VMs on this machine. Each VM's directory .devvm/<vm>/ is the
// runner's working directory (relative sockets and volumes resolve there) and
// holds:
//
//	current        nix out-link (GC root) of the declared runner
//	old            the previous runner (GC root), for rollback
//	console.log    the runner's stdout/stderr (serial console) of this boot
//	runtime.json   the running hypervisor: process identity, runner, SSH port
//	known_hosts    the guest host key pinned at this boot
//	ssh_config     OpenSSH stanza
type local struct{ *common }

func newLocal(c *common) *local { return &local{c} }

// Close implements impl: a local backend holds no connection.
func (l *local) Close() error { return nil }

// localRuntime is .devvm/<vm>/runtime.json.
type localRuntime struct {
	Identity proc.Identity `json:"identity"`
	Runner   string        `json:"runner"`
	SSHBind  string        `json:"ssh_bind"`
	SSHPort  int           `json:"ssh_port"`
	Started  time.Time     `json:"started"`
	Ready    bool          `json:"ready"`
}

func (l *local) flake() (string, error) {
	rel, err := l.flakeRel()
	if err != nil {
		return "", err
	}
	return filepath.Join(l.vf.Dir, rel), nil
}

func (l *local) attr(name, what string) (string, error) {
	f, err := l.flake()
	if err != nil {
		return "", err
	}
	return f + "#nixosConfigurations." + l.machine(name).Config + ".config.microvm." + what, nil
}

// nix runs nix in the checkout, printing the command; stderr is shown as it
// comes and its end is part of the error.
func (l *local) nix(ctx context.Context, args ...string) (string, error) {
	args = nixArgs(args...) // flake.go: --extra-experimental-features 'nix-command flakes'
	l.ui.Printf("$ nix %s", sshx.ShellQuote(args))
	cmd := l.env.Command(ctx, "nix", args...)
	cmd.Dir = l.vf.Dir
	var out, errb bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = io.MultiWriter(&errb, indent(l.ui.Err))
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return "", fmt.Errorf("nix is not installed or not in PATH: install Nix with flakes enabled (`devvm doctor`)")
		}
		return "", fmt.Errorf("`nix %s` failed (%v):\n  %s", sshx.ShellQuote(args), err, strings.ReplaceAll(tail(errb.String(), 30), "\n", "\n  "))
	}
	return out.String(), nil
}

// observe reads the runtime record and proves its process is still ours.
func (l *local) observe(name string) (*localRuntime, string, string) {
	var rt localRuntime
	ok, err := state.ReadJSON(l.vm(name).RuntimeRecord(), &rt)
	if err != nil {
		return nil, backend.Broken, err.Error()
	}
	if !ok {
		return nil, backend.Stopped, ""
	}
	v := proc.Check(rt.Identity)
	switch v.State {
	case proc.Alive:
		if !rt.Ready {
			return &rt, backend.Starting, "booting: SSH has not answered yet"
		}
		return &rt, backend.Running, ""
	case proc.Unknown:
		return &rt, backend.Broken, v.Reason
	}
	os.Remove(l.vm(name).RuntimeRecord())
	return nil, backend.Stopped, "stale record cleaned: " + v.Reason
}

// Build implements backend.Backend: nix build of every runner (GC roots in .devvm/<vm>/current).
func (l *local) Build(ctx context.Context, opts backend.BuildOptions) error {
	for _, n := range l.names {
		if _, err := l.build(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// build builds the runner of a machine into .devvm/<vm>/current, keeping the
// previous one as old when it changed; it returns the runner's store path.
func (l *local) build(ctx context.Context, name string) (string, error) {
	v := l.vm(name)
	if err := v.Ensure(); err != nil {
		return "", err
	}
	cur := v.Path("current")
	prev, _ := os.Readlink(cur)
	a, err := l.attr(name, "declaredRunner")
	if err != nil {
		return "", err
	}
	if _, err := l.nix(ctx, "build", "-o", cur, a); err != nil {
		return "", err
	}
	now, err := os.Readlink(cur)
	if err != nil {
		return "", fmt.Errorf("nix build did not leave the out-link %s: %w", cur, err)
	}
	if prev != "" && prev != now {
		if _, err := os.Stat(prev); err == nil {
			if _, err := l.nix(ctx, "build", "-o", v.Path("old"), prev); err != nil {
				return "", err
			}
		}
	}
	return now, nil
}

// sshForward asks nix which host port forwards to the guest's sshd.
func (l *local) sshForward(ctx context.Context, name string) (string, int, error) {
	a, err := l.attr(name, "forwardPorts")
	if err != nil {
		return "", 0, err
	}
	out, err := l.nix(ctx, "eval", "--json", a)
	if err != nil {
		return "", 0, err
	}
	bind, port, err := hostForward([]byte(out), l.machine(name).Port) // port is the host port
	if err != nil {
		return "", 0, fmt.Errorf("VM %q: %w", name, err)
	}
	return bind, port, nil
}

// Up implements backend.Backend.
func (l *local) Up(ctx context.Context, names []string, opts backend.UpOptions) error {
	names, err := l.pick(names)
	if err != nil {
		return err
	}
	if opts.Foreground {
		if len(names) != 1 {
			return fmt.Errorf("--foreground runs one VM: name it")
		}
		return l.Run(ctx, names[0])
	}
	unlock, err := l.lock(names, "devvm up")
	if err != nil {
		return err
	}
	defer unlock()
	for _, n := range names {
		if err := l.up(ctx, n, opts); err != nil {
			return err
		}
	}
	return nil
}

func (l *local) up(ctx context.Context, name string, opts backend.UpOptions) error {
	rt, st, why := l.observe(name)
	switch st {
	case backend.Running, backend.Starting:
		msg := fmt.Sprintf("VM %q is already running (pid %d, ssh %s:%d)", name, rt.Identity.PID, rt.SSHBind, rt.SSHPort)
		if cur, _ := os.Readlink(l.vm(name).Path("current")); cur != "" && cur != rt.Runner {
			msg += "; it runs an older runner: `devvm restart " + name + "` boots the current one"
		}
		l.ui.Printf("%s", msg)
		if st == backend.Starting {
			return l.waitReady(ctx, name, rt, opts.Timeout)
		}
		return l.serveShares(ctx, name, rt)
	case backend.Broken:
		return fmt.Errorf("VM %q: %s", name, why)
	}
	// localcheck.go: hypervisor, interfaces, system and the SSH forward, before the build.
	if _, _, err := l.precheck(ctx, name); err != nil {
		return err
	}
	runner, err := l.build(ctx, name)
	if err != nil {
		return err
	}
	rt, err = l.start(ctx, name, runner)
	if err != nil {
		return err
	}
	return l.waitReady(ctx, name, rt, opts.Timeout)
}

// start runs bin/microvm-run detached in the VM's directory.
func (l *local) start(ctx context.Context, name, runner string) (*localRuntime, error) {
	v := l.vm(name)
	run := filepath.Join(runner, "bin", "microvm-run")
	if _, err := os.Stat(run); err != nil {
		return nil, fmt.Errorf("the runner %s of VM %q has no bin/microvm-run (%v): check microvm.hypervisor in its config", runner, name, err)
	}
	bind, port, err := l.sshForward(ctx, name)
	if err != nil {
		return nil, err
	}
	if !qemu.PortFree(bind, port) {
		owner := ""
		if o := qemu.PortOwner(port); o != "" {
			owner = " by " + o
		}
		return nil, fmt.Errorf("VM %q forwards SSH from %s:%d, which is in use%s: stop that program or change the forward in the VM's microvm.forwardPorts", name, bind, port, owner)
	}
	logf, err := os.Create(v.ConsoleLog())
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer devnull.Close()
	// Not bound to ctx: the VM outlives this command.
	cmd := exec.Command(run)
	cmd.Dir = v.Dir()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	l.ui.Printf("$ cd %s && %s   (detached; console: %s)", v.Dir(), run, v.ConsoleLog())
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", run, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }() // reap it while devvm lives
	// microvm-run execs the hypervisor with argv0 microvm@HOSTNAME: wait for it.
	marker := "microvm@" + l.machine(name).Config
	var id proc.Identity
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			return nil, fmt.Errorf("%s exited at once\n%s", run, backend.ConsoleTail(v.ConsoleLog(), 20))
		default:
		}
		if id, err = proc.Capture(cmd.Process.Pid, marker, ""); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s (pid %d) did not exec its hypervisor (%v); it is left running: stop it yourself", run, cmd.Process.Pid, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	rt := &localRuntime{Identity: id, Runner: runner, SSHBind: bind, SSHPort: port, Started: l.env.Now()}
	if err := state.WriteJSON(v.RuntimeRecord(), rt); err != nil {
		return nil, err
	}
	l.register(name)
	l.ui.Printf("VM %q is running as pid %d; SSH forwarded from %s:%d", name, id.PID, bind, port)
	return rt, nil
}

func (l *local) target(name string, rt *localRuntime) (*sshx.Target, error) {
	k, err := l.userKey()
	if err != nil {
		return nil, err
	}
	return &sshx.Target{Addr: fmt.Sprintf("%s:%d", rt.SSHBind, rt.SSHPort), User: l.machine(name).User, Key: k,
		UseAgent: true, KnownHosts: l.vm(name).KnownHosts(), HostKeyAlias: alias(name),
		AgentForward: l.vf.SSH.ForwardAgent, HandshakeTimeout: 10 * time.Second}, nil
}

// waitReady waits for SSH with our key, pins this boot's host key and writes
// ssh_config; it fails early when the hypervisor dies.
func (l *local) waitReady(ctx context.Context, name string, rt *localRuntime, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = l.vf.BootTimeout.D()
	}
	t, err := l.target(name, rt)
	if err != nil {
		return err
	}
	v := l.vm(name)
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	l.ui.Printf("waiting for SSH of %s on %s", name, t.Addr)
	start := l.env.Now()
	c, died, err := backend.WaitSSH(wctx, *t, rt.Identity, readyPoll)
	if err != nil {
		err = explainLogin(err, name, t) // login.go: which keys were offered
		if died != "" {
			os.Remove(v.RuntimeRecord())
			return fmt.Errorf("VM %q exited while booting (%s)\n%s", name, died, backend.ConsoleTail(v.ConsoleLog(), 20))
		}
		return fmt.Errorf("VM %q did not accept SSH within %s: %w\n%s\nhint: it is still running: `devvm logs %s`, `devvm halt %s`", name, timeout, err, backend.ConsoleTail(v.ConsoleLog(), 20), name, name)
	}
	c.Close()
	rt.Ready = true
	if err := state.WriteJSON(v.RuntimeRecord(), rt); err != nil {
		return err
	}
	text, err := l.sshConfigText(name, rt)
	if err != nil {
		return err
	}
	if err := state.WriteFileAtomic(v.SSHConfig(), []byte(text), 0o644); err != nil {
		return err
	}
	l.ui.Printf("VM %q is ready after %.1fs: `devvm ssh %s` (or ssh -F %s %s)", name, l.env.Now().Sub(start).Seconds(), name, v.SSHConfig(), alias(name))
	return l.serveShares(ctx, name, rt)
}

// serveShares starts the servers of the `mode = "ssh"` shares of a ready VM.
func (l *local) serveShares(ctx context.Context, name string, rt *localRuntime) error {
	t, err := l.target(name, rt)
	if err != nil {
		return err
	}
	return l.startShares(ctx, name, t, nil)
}

func (l *local) sshConfigText(name string, rt *localRuntime) (string, error) {
	k, err := l.userKey()
	if err != nil {
		return "", err
	}
	return sshx.SSHConfig(sshx.ConfigOptions{Host: alias(name), HostName: rt.SSHBind, Port: fmt.Sprint(rt.SSHPort),
		User: l.machine(name).User, IdentityFile: k.PrivatePath, KnownHosts: l.vm(name).KnownHosts(),
		HostKeyAlias: alias(name), ForwardAgent: l.vf.SSH.ForwardAgent})
}

// SSHTarget implements backend.Backend.
func (l *local) SSHTarget(ctx context.Context, name string) (*sshx.Target, error) {
	if _, err := l.pick([]string{name}); err != nil {
		return nil, err
	}
	rt, st, why := l.observe(name)
	switch st {
	case backend.Stopped:
		return nil, fmt.Errorf("VM %q is not running: start it with `devvm up %s`", name, name)
	case backend.Broken:
		return nil, fmt.Errorf("VM %q: %s", name, why)
	case backend.Starting:
		return nil, fmt.Errorf("VM %q is still booting (SSH has not answered yet): wait for `devvm up` to finish", name)
	}
	return l.target(name, rt)
}

// SSHConfig implements backend.Backend.
func (l *local) SSHConfig(ctx context.Context, name string) (string, error) {
	if _, err := l.SSHTarget(ctx, name); err != nil {
		return "", err
	}
	rt, _, _ := l.observe(name)
	return l.sshConfigText(name, rt)
}

// Status implements backend.Backend.
func (l *local) Status(ctx context.Context, names []string) ([]backend.Status, error) {
	names, err := l.pick(names)
	if err != nil {
		return nil, err
	}
	var out []backend.Status
	for _, n := range names {
		rt, st, why := l.observe(n)
		s := backend.Status{Name: n, Backend: l.Kind(), State: st, Reason: why, Checkout: l.vf.Dir}
		if rt == nil {
			s.Hint = fmt.Sprintf("`devvm up %s` starts it", n)
			out = append(out, s)
			continue
		}
		s.PID, s.Started = rt.Identity.PID, rt.Started
		s.Uptime = l.env.Now().Sub(rt.Started).Truncate(time.Second).String()
		s.SSH = fmt.Sprintf("%s:%d", rt.SSHBind, rt.SSHPort)
		s.BuildKey = filepath.Base(rt.Runner)
		s.Accel = "tcg"
		if l.env.KVM().Usable {
			s.Accel = "kvm"
		}
		if cpu, rss, err := proc.Usage(rt.Identity.PID); err == nil {
			s.CPU, s.RSS = cpu, rss
		}
		if st == backend.Running {
			s.Shares = l.shareStatus(n)
		}
		if cur, _ := os.Readlink(l.vm(n).Path("current")); cur != "" && cur != rt.Runner && st == backend.Running {
			s.State, s.Outdated = backend.Outdated, true
			s.Reason = fmt.Sprintf("booted %s but current is %s", filepath.Base(rt.Runner), filepath.Base(cur))
			s.Hint = fmt.Sprintf("`devvm restart %s` boots the current runner", n)
		}
		out = append(out, s)
	}
	return out, nil
}

// Halt implements backend.Backend.
func (l *local) Halt(ctx context.Context, names []string, opts backend.HaltOptions) error {
	names, err := l.pick(names)
	if err != nil {
		return err
	}
	unlock, err := l.lock(names, "devvm halt")
	if err != nil {
		return err
	}
	defer unlock()
	for _, n := range names {
		if err := l.halt(ctx, n, opts); err != nil {
			return err
		}
	}
	return nil
}

// halt: bin/microvm-shutdown of the booted runner (stdin /dev/null, in the
// VM's directory) when it has one, then SIGTERM, then SIGKILL, each bounded
// within the total timeout. Only a process proven ours is signalled.
func (l *local) halt(ctx context.Context, name string, opts backend.HaltOptions) error {
	// Share servers unmount in the guest while it still runs.
	l.stopShares(ctx, name)
	rt, st, _ := l.observe(name)
	if rt == nil || st == backend.Stopped {
		l.ui.Printf("VM %q is not running", name)
		return nil
	}
	total := opts.Timeout
	if total <= 0 {
		total = DefaultHaltTimeout
	}
	start := l.env.Now()
	v := l.vm(name)
	waitFor := func(d time.Duration) bool {
		wctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		return proc.WaitGone(wctx, rt.Identity, 50*time.Millisecond) == nil
	}
	done := func(how string) error {
		os.Remove(v.RuntimeRecord())
		l.ui.Printf("VM %q halted (%s) in %.1fs", name, how, l.env.Now().Sub(start).Seconds())
		return nil
	}
	shutdown := filepath.Join(rt.Runner, "bin", "microvm-shutdown")
	if _, err := os.Stat(shutdown); err == nil && !opts.Force {
		l.ui.Printf("$ cd %s && %s </dev/null", v.Dir(), shutdown)
		sctx, cancel := context.WithTimeout(ctx, total*6/10)
		cmd := exec.CommandContext(sctx, shutdown)
		cmd.Dir = v.Dir()
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			l.ui.Printf("microvm-shutdown failed (%v): %s", err, strings.TrimSpace(string(out)))
		}
		if waitFor(total * 6 / 10) {
			return done("microvm-shutdown")
		}
		l.ui.Printf("the guest did not power off; stopping the hypervisor")
	}
	if err := proc.Signal(rt.Identity, syscall.SIGTERM); err != nil {
		if proc.Check(rt.Identity).State != proc.Alive {
			return done("it had already exited")
		}
		return err
	}
	if waitFor(total * 3 / 10) {
		return done("SIGTERM")
	}
	if err := proc.Signal(rt.Identity, syscall.SIGKILL); err != nil && proc.Check(rt.Identity).State == proc.Alive {
		return err
	}
	if waitFor(2 * time.Second) {
		return done("SIGKILL")
	}
	return fmt.Errorf("the hypervisor of VM %q (pid %d) survived SIGKILL; is it stuck in the kernel (D state)? check `ps -o stat= -p %d`", name, rt.Identity.PID, rt.Identity.PID)
}

// Restart halts and starts VMs again from their current runner.
func (l *local) Restart(ctx context.Context, names []string) error {
	names, err := l.pick(names)
	if err != nil {
		return err
	}
	unlock, err := l.lock(names, "devvm restart")
	if err != nil {
		return err
	}
	defer unlock()
	for _, n := range names {
		if err := l.restart(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

func (l *local) restart(ctx context.Context, name string) error {
	if err := l.halt(ctx, name, backend.HaltOptions{}); err != nil {
		return err
	}
	cur, err := os.Readlink(l.vm(name).Path("current"))
	if err != nil {
		return fmt.Errorf("VM %q has no runner yet: `devvm up %s` builds it", name, name)
	}
	rt, err := l.start(ctx, name, cur)
	if err != nil {
		return err
	}
	return l.waitReady(ctx, name, rt, 0)
}

// Rollback swaps the current and old runners and restarts.
func (l *local) Rollback(ctx context.Context, names []string) error {
	names, err := l.pick(names)
	if err != nil {
		return err
	}
	unlock, err := l.lock(names, "devvm rollback")
	if err != nil {
		return err
	}
	defer unlock()
	for _, n := range names {
		v := l.vm(n)
		cur, _ := os.Readlink(v.Path("current"))
		old, _ := os.Readlink(v.Path("old"))
		if old == "" || cur == "" {
			return fmt.Errorf("VM %q has no previous runner (%s): devvm keeps one when a build changes the runner", n, v.Path("old"))
		}
		if _, err := l.nix(ctx, "build", "-o", v.Path("current"), old); err != nil {
			return err
		}
		if _, err := l.nix(ctx, "build", "-o", v.Path("old"), cur); err != nil {
			return err
		}
		l.ui.Printf("VM %q: current runner is now %s (was %s, kept as old)", n, filepath.Base(old), filepath.Base(cur))
		if err := l.restart(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// Destroy implements backend.Backend.
func (l *local) Destroy(ctx context.Context, names []string, opts backend.DestroyOptions) error {
	names, err := l.pick(names)
	if err != nil {
		return err
	}
	unlock, err := l.lock(names, "devvm destroy")
	if err != nil {
		return err
	}
	defer unlock()
	for _, n := range names {
		if _, st, _ := l.observe(n); st != backend.Stopped && !opts.Force && l.ui.In != nil {
			if !l.confirm(fmt.Sprintf("VM %q is running; destroy it and delete its state?", n)) {
				return fmt.Errorf("not destroyed")
			}
		}
		if err := l.halt(ctx, n, backend.HaltOptions{Force: opts.Force}); err != nil {
			return fmt.Errorf("%v\nnothing was deleted", err)
		}
		if err := l.forgetLocal(n); err != nil {
			return err
		}
		l.ui.Printf("VM %q destroyed: its runner GC roots, logs and keys are gone", n)
	}
	if opts.GC {
		out, err := l.nix(ctx, "store", "gc")
		if err != nil {
			return err
		}
		l.ui.Printf("nix store gc freed %s", backend.HumanBytes(parseFreed(out)))
	}
	return nil
}

// GC implements backend.Backend: drop the old runners (rollback targets) of
// VMs not running from them, then nix store gc.
func (l *local) GC(ctx context.Context, opts backend.GCOptions) (*backend.GCReport, error) {
	rep := &backend.GCReport{FreedBytes: -1}
	for _, n := range l.names {
		old := l.vm(n).Path("old")
		target, err := os.Readlink(old)
		if err != nil {
			continue
		}
		if rt, _, _ := l.observe(n); rt != nil && rt.Runner == target {
			continue
		}
		rep.Roots = append(rep.Roots, old)
		if !opts.DryRun {
			if err := os.Remove(old); err != nil {
				return rep, err
			}
		}
	}
	if opts.DryRun {
		return rep, nil
	}
	out, err := l.nix(ctx, "store", "gc")
	if err != nil {
		return rep, err
	}
	rep.StoreGC, rep.FreedBytes = true, parseFreed(out)
	return rep, nil
}

// Logs implements backend.Backend: the console log of the current boot.
func (l *local) Logs(ctx context.Context, name string, opts backend.LogOptions, w io.Writer) error {
	if _, err := l.pick([]string{name}); err != nil {
		return err
	}
	path := l.vm(name).ConsoleLog()
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("no console log yet (%s): start the VM with `devvm up %s`", path, name)
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	if opts.Lines > 0 {
		data = []byte(tail(string(data), opts.Lines) + "\n")
	}
	w.Write(data)
	if !opts.Follow {
		return nil
	}
	rd := bufio.NewReader(f)
	for {
		chunk, err := rd.ReadBytes('\n')
		if len(chunk) > 0 {
			w.Write(chunk)
		}
		if err == nil {
			continue
		}
		if _, st, _ := l.observe(name); st == backend.Stopped {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Console implements backend.Backend.
func (l *local) Console(ctx context.Context, name string, in *os.File, out io.Writer) error {
	return fmt.Errorf("microvm.nix VMs have no attachable serial console: `devvm logs %s -f` follows it, `devvm run %s` runs the VM in the foreground", name, name)
}

// Run runs a VM's bin/microvm-run in the foreground on this terminal (like
// `microvm -r`), from the VM's directory; the VM stops with it.
func (l *local) Run(ctx context.Context, name string) error {
	if _, err := l.pick([]string{name}); err != nil {
		return err
	}
	if _, st, _ := l.observe(name); st != backend.Stopped {
		return fmt.Errorf("VM %q is already running: `devvm halt %s` first", name, name)
	}
	runner, err := l.build(ctx, name)
	if err != nil {
		return err
	}
	run := filepath.Join(runner, "bin", "microvm-run")
	l.ui.Printf("$ cd %s && %s   (the VM stops when this command ends)", l.vm(name).Dir(), run)
	cmd := exec.CommandContext(ctx, run)
	cmd.Dir = l.vm(name).Dir()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", run, err)
	}
	return nil
}
