package microvm

import (
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
	"github.com/devvm/devvm/launcher/machine"
	"github.com/devvm/devvm/launcher/proc"
	"github.com/devvm/devvm/launcher/qemu"
	"github.com/devvm/devvm/launcher/sshx"
	"github.com/devvm/devvm/launcher/state"
)

// local runs the VMs on this machine. Each VM's state directory is the
// runner's working directory (relative sockets and volumes resolve there)
// and holds, besides what the lifecycle keeps there:
//
//	current        nix out-link (GC root) of the declared runner
//	old            the previous runner (GC root), for rollback
type local struct{ *common }

var (
	_ machine.Driver     = (*local)(nil)
	_ machine.Rollbacker = (*local)(nil)
	_ machine.Describer  = (*local)(nil)
	_ machine.Adopter    = (*local)(nil)
	_ machine.Migrator   = (*local)(nil)
)

// Adopt implements machine.Adopter: a hypervisor an older devvm started
// (proven ours by its microvm@NAME argv0), reached at its SSH forward.
func (l *local) Adopt(m *machine.Machine, id proc.Identity, argv []string) (*machine.Record, error) {
	bind, port, err := l.sshForward(context.Background(), m.Name)
	if err != nil {
		return nil, err
	}
	rec := &machine.Record{SSHHost: bind, SSHPort: port, Accel: "tcg", Started: time.UnixMilli(id.StartTime)}
	if cur, err := os.Readlink(m.VM.Path("current")); err == nil {
		rec.Artifact, rec.BuildKey = cur, filepath.Base(cur)
	}
	if l.env.KVM().Usable {
		rec.Accel = "kvm"
	}
	return rec, nil
}

// MigrateLegacy implements machine.Migrator: the runner out-links (GC roots)
// of a legacy .devvm are made again in devvm's state, for targets that are
// store items (a link in the checkout could point anywhere), so a running
// runner and its rollback target are not collected.
func (l *local) MigrateLegacy(m *machine.Machine, legacy string) error {
	for _, name := range []string{"current", "old"} {
		target, err := os.Readlink(filepath.Join(legacy, name))
		if err != nil || !isStorePath(target) {
			continue
		}
		if _, err := os.Stat(target); err != nil {
			continue
		}
		if _, err := l.nix(context.Background(), "build", "-o", m.VM.Path(name), target); err != nil {
			return fmt.Errorf("keeping the %s runner of VM %q from %s: %w", name, m.Name, legacy, err)
		}
	}
	return nil
}

// Describe implements machine.Describer.
func (l *local) Describe(m *machine.Machine, rec *machine.Record, s *backend.Status) {
	outdatedHint(m, s)
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

// Identity implements machine.Driver: microvm-run execs the hypervisor with
// argv0 microvm@HOSTNAME.
func (l *local) Identity(m *machine.Machine) (string, string) {
	return "microvm@" + l.machine(m.Name).Config, ""
}

// Probe implements machine.Driver: a live hypervisor process is the VM.
func (l *local) Probe(ctx context.Context, m *machine.Machine, rec *machine.Record) machine.Verdict {
	return machine.Verdict{State: backend.Running}
}

// Preflight implements machine.Driver: the hypervisor, interfaces, system
// and SSH forward are evaluated before any build (localcheck.go).
func (l *local) Preflight(ctx context.Context, m *machine.Machine) error {
	_, _, err := l.precheck(ctx, m.Name)
	return err
}

// Build implements machine.Driver: nix build of the runner into current
// (nix caches it), keeping the previous one as old when it changed.
func (l *local) Build(ctx context.Context, m *machine.Machine, prev *machine.Build, opts backend.BuildOptions) (*machine.Build, error) {
	cur := m.VM.Path("current")
	before, _ := os.Readlink(cur)
	a, err := l.attr(m.Name, "declaredRunner")
	if err != nil {
		return nil, err
	}
	start := l.env.Now()
	if _, err := l.nix(ctx, "build", "-o", cur, a); err != nil {
		return nil, err
	}
	now, err := os.Readlink(cur)
	if err != nil {
		return nil, fmt.Errorf("nix build did not leave the out-link %s: %w", cur, err)
	}
	if before != "" && before != now {
		if _, err := os.Stat(before); err == nil {
			if _, err := l.nix(ctx, "build", "-o", m.VM.Path("old"), before); err != nil {
				return nil, err
			}
		}
	}
	if prev != nil && prev.Artifact == now {
		return prev, nil
	}
	return &machine.Build{Key: filepath.Base(now), Artifact: now, Root: cur, BuiltAt: l.env.Now(),
		Seconds: l.env.Now().Sub(start).Seconds(), Changed: true}, nil
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

// Start implements machine.Driver: bin/microvm-run in the VM's directory,
// detached, or attached to this terminal with fg (like `microvm -r`).
func (l *local) Start(ctx context.Context, m *machine.Machine, b *machine.Build, fg bool) (*machine.Record, error) {
	run := filepath.Join(b.Artifact, "bin", "microvm-run")
	if _, err := os.Stat(run); err != nil {
		return nil, fmt.Errorf("the runner %s of VM %q has no bin/microvm-run (%v): check microvm.hypervisor in its config", b.Artifact, m.Name, err)
	}
	bind, port, err := l.sshForward(ctx, m.Name)
	if err != nil {
		return nil, err
	}
	if !qemu.PortFree(bind, port) {
		owner := ""
		if o := qemu.PortOwner(port); o != "" {
			owner = " by " + o
		}
		return nil, fmt.Errorf("VM %q forwards SSH from %s:%d, which is in use%s: stop that program or change the forward in the VM's microvm.forwardPorts", m.Name, bind, port, owner)
	}
	rec := &machine.Record{SSHHost: bind, SSHPort: port, BuildKey: b.Key, Artifact: b.Artifact, Accel: "tcg"}
	if l.env.KVM().Usable {
		rec.Accel = "kvm"
	}
	cmd := l.env.Command(context.Background(), run)
	cmd.Dir = m.VM.Dir()
	if fg {
		l.ui.Printf("$ cd %s && %s   (the VM stops when this command ends)", m.VM.Dir(), run)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	} else {
		logf, err := state.CreateFile(m.VM.ConsoleLog(), 0o600)
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
		cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		l.ui.Printf("$ cd %s && %s   (detached; console: %s)", m.VM.Dir(), run, m.VM.ConsoleLog())
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", run, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // reap it while devvm lives
	marker, _ := l.Identity(m)
	deadline := l.env.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			return nil, fmt.Errorf("%s exited at once (%v)\n%s", run, err, backend.ConsoleTail(m.VM.ConsoleLog(), 20))
		default:
		}
		id, err := proc.Capture(cmd.Process.Pid, marker, "")
		if err == nil {
			rec.Process, rec.Started = &id, l.env.Now()
			break
		}
		if l.env.Now().After(deadline) {
			return nil, fmt.Errorf("%s (pid %d) did not exec its hypervisor (%v); it is left running: stop it yourself", run, cmd.Process.Pid, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if fg {
		rec.SetWait(func() error { return <-exited })
	}
	l.ui.Printf("VM %q is running as pid %d; SSH forwarded from %s:%d", m.Name, rec.Process.PID, bind, port)
	return rec, nil
}

// Target implements machine.Driver.
func (l *local) Target(m *machine.Machine, rec *machine.Record) (*sshx.Target, error) {
	k, err := l.userKey()
	if err != nil {
		return nil, err
	}
	extra, err := l.machineKeys(m.Name)
	if err != nil {
		return nil, err
	}
	return &sshx.Target{Addr: fmt.Sprintf("%s:%d", rec.SSHHost, rec.SSHPort), User: l.machine(m.Name).User, Key: k,
		ExtraKeys: extra, UseAgent: true, KnownHosts: m.VM.KnownHosts(), HostKeyAlias: sshx.HostAlias(m.Name),
		AgentForward: l.vf.SSH.ForwardAgent, HandshakeTimeout: 10 * time.Second, Ciphers: rec.Ciphers()}, nil
}

// SSHConfig implements machine.Driver.
func (l *local) SSHConfig(m *machine.Machine, rec *machine.Record) (string, error) {
	k, err := l.userKey()
	if err != nil {
		return "", err
	}
	return sshx.SSHConfig(sshx.ConfigOptions{Host: sshx.HostAlias(m.Name), HostName: rec.SSHHost, Port: fmt.Sprint(rec.SSHPort),
		User: l.machine(m.Name).User, IdentityFile: k.PrivatePath, KnownHosts: m.VM.KnownHosts(),
		HostKeyAlias: sshx.HostAlias(m.Name), ForwardAgent: l.vf.SSH.ForwardAgent, Ciphers: rec.Ciphers()})
}

// Outdated implements machine.Driver: the current runner is not the booted one.
func (l *local) Outdated(ctx context.Context, m *machine.Machine, rec *machine.Record) string {
	if cur, _ := os.Readlink(m.VM.Path("current")); cur != "" && cur != rec.Artifact {
		return fmt.Sprintf("booted %s but current is %s", filepath.Base(rec.Artifact), filepath.Base(cur))
	}
	return ""
}

// Stops implements machine.Driver: bin/microvm-shutdown of the booted
// runner (stdin /dev/null, in the VM's directory) when it has one.
func (l *local) Stops(m *machine.Machine, rec *machine.Record) []machine.Stop {
	shutdown := filepath.Join(rec.Artifact, "bin", "microvm-shutdown")
	if _, err := os.Stat(shutdown); err != nil {
		return nil
	}
	return []machine.Stop{{Name: "microvm-shutdown", Reserve: 3 * time.Second, Do: func(ctx context.Context) error {
		l.ui.Printf("$ cd %s && %s </dev/null", m.VM.Dir(), shutdown)
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		cmd := l.env.Command(sctx, shutdown)
		cmd.Dir = m.VM.Dir()
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	}}}
}

// Clean implements machine.Driver: the out-links live in the state directory.
func (l *local) Clean(ctx context.Context, m *machine.Machine) error { return nil }

// Rollback implements machine.Rollbacker: current and old swap.
func (l *local) Rollback(ctx context.Context, m *machine.Machine) (*machine.Build, error) {
	cur, _ := os.Readlink(m.VM.Path("current"))
	old, _ := os.Readlink(m.VM.Path("old"))
	if old == "" || cur == "" {
		return nil, fmt.Errorf("VM %q has no previous runner (%s): devvm keeps one when a build changes the runner", m.Name, m.VM.Path("old"))
	}
	if _, err := l.nix(ctx, "build", "-o", m.VM.Path("current"), old); err != nil {
		return nil, err
	}
	if _, err := l.nix(ctx, "build", "-o", m.VM.Path("old"), cur); err != nil {
		return nil, err
	}
	l.ui.Printf("VM %q: current runner is now %s (was %s, kept as old)", m.Name, filepath.Base(old), filepath.Base(cur))
	return &machine.Build{Key: filepath.Base(old), Artifact: old, Root: m.VM.Path("current"), BuiltAt: l.env.Now()}, nil
}

// GC implements machine.Driver: drop the old runners (rollback targets) of
// VMs not running from them (all out-links of destroyed ones), then nix
// store gc.
func (l *local) GC(ctx context.Context, ts []machine.GCTarget, opts backend.GCOptions) (*backend.GCReport, error) {
	rep := &backend.GCReport{FreedBytes: -1}
	for _, t := range ts {
		links := []string{t.M.VM.Path("old")}
		if t.Keep == nil {
			links = append(links, t.M.VM.Path("current"))
		}
		for _, p := range links {
			target, err := os.Readlink(p)
			if err != nil || t.Keep[filepath.Base(target)] {
				continue
			}
			rep.Roots = append(rep.Roots, p)
			if !opts.DryRun {
				if err := os.Remove(p); err != nil {
					return rep, err
				}
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
