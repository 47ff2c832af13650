package microvm

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/machine"
	"github.com/devvm/devvm/launcher/sshx"
	"github.com/devvm/devvm/launcher/state"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Hypervisor paths. devvm asks the hypervisor's shell for them once per
// connection, so a test hypervisor (or a host with a non-default
// microvm.stateDir) can move them with these environment variables; on a
// normal NixOS host they are the defaults, and every printed command shows
// the literal paths.
const (
	stateDirVar    = "DEVVM_MICROVM_STATE_DIR"
	gcRootsVar     = "DEVVM_MICROVM_GCROOTS"
	defaultState   = "/var/lib/microvms"
	defaultGCRoots = "/nix/var/nix/gcroots/microvm"
)

// remote runs the VMs on a NixOS hypervisor over SSH; systemd there runs
// each as microvm@NAME.
type remote struct {
	*common
	dest dest
	hvT  *sshx.Target

	mu       sync.Mutex
	hv       *sshx.Client
	stateDir string
	gcRoots  string

	// dep deploys the machines of this command (Prepare).
	dep *deployer
	// hostRolledBack: this command already switched the hypervisor back.
	hostRolledBack bool
}

func newRemote(c *common) (*remote, error) {
	r := c.vf.MicroVM.Remote
	d, err := parseDest(r.Destination)
	if err != nil {
		return nil, fmt.Errorf("%s: microvm.remote.destination: %v", c.vf.Path, err)
	}
	kh := r.KnownHosts
	if kh == "" {
		kh = "~/.ssh/known_hosts"
	}
	t := &sshx.Target{Addr: d.Addr(), User: d.User, KnownHosts: c.vf.Resolve(kh), UseAgent: true}
	if r.IdentityFile != "" {
		k, err := sshx.LoadKey(c.vf.Resolve(r.IdentityFile))
		if err != nil {
			return nil, fmt.Errorf("%s: microvm.remote.identity_file: %v", c.vf.Path, err)
		}
		t.Key = k
	} else {
		k, err := c.userKey()
		if err != nil {
			return nil, err
		}
		t.Key = k
	}
	return &remote{common: c, dest: d, hvT: t}, nil
}

// client returns the one connection to the hypervisor, dialing it first.
func (r *remote) client(ctx context.Context) (*sshx.Client, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hv != nil {
		return r.hv, nil
	}
	c, err := sshx.Dial(ctx, *r.hvT)
	if errors.Is(err, sshx.ErrAuthRefused) {
		key := "microvm.remote.identity_file"
		if r.vf.MicroVM.Remote.IdentityFile == "" {
			key = "your SSH agent's keys or devvm's key " + r.hvT.Key.PublicPath
		}
		return nil, fmt.Errorf("connect to the hypervisor %s: %w\nhint: the hypervisor must list the public key of %s in ~%s/.ssh/authorized_keys (the seed used ssh -i KEY.pem %s)", r.dest, err, key, r.dest.User, r.dest)
	}
	if err != nil {
		return nil, fmt.Errorf("connect to the hypervisor %s: %w", r.dest, err)
	}
	var out, errb bytes.Buffer
	probe := fmt.Sprintf(`printf '%%s\n' "${%s:-%s}" "${%s:-%s}"`, stateDirVar, defaultState, gcRootsVar, defaultGCRoots)
	code, err := c.Run(ctx, probe, nil, &out, &errb, false)
	if err != nil || code != 0 {
		c.Close()
		return nil, fmt.Errorf("the hypervisor %s did not run a shell command (exit %d, %v): %s", r.dest, code, err, strings.TrimSpace(errb.String()))
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "/") || !strings.HasPrefix(lines[1], "/") {
		c.Close()
		return nil, fmt.Errorf("unexpected answer from the hypervisor %s to a path query: %q", r.dest, out.String())
	}
	r.hv, r.stateDir, r.gcRoots = c, lines[0], lines[1]
	return c, nil
}

// Close ends the connection to the hypervisor.
func (r *remote) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hv == nil {
		return nil
	}
	err := r.hv.Close()
	r.hv = nil
	return err
}

// RemoteError is a command that failed on the hypervisor.
type RemoteError struct {
	Host    string
	Command string
	Status  int
	Stderr  string
}

func (e *RemoteError) Error() string {
	msg := fmt.Sprintf("on %s, `%s` failed with exit status %d", e.Host, e.Command, e.Status)
	if e.Stderr != "" {
		msg += ":\n  " + strings.ReplaceAll(e.Stderr, "\n", "\n  ")
	}
	return msg
}

// exec prints cmd and runs it on the hypervisor. With show, its output is
// copied to the UI as it comes; stdout is returned either way, and a non-zero
// exit is a *RemoteError carrying the end of stderr.
func (r *remote) exec(ctx context.Context, cmd string, stdin io.Reader, show bool) (string, error) {
	r.ui.Printf("%s$ %s", r.dest.Host, cmd)
	return r.run(ctx, cmd, stdin, show)
}

// query runs a read-only status query on the hypervisor, printed only with
// --debug (devvm asks often: status, and while a halt waits).
func (r *remote) query(ctx context.Context, cmd string) (string, error) {
	r.ui.Debugf("%s$ %s", r.dest.Host, cmd)
	return r.run(ctx, cmd, nil, false)
}

func (r *remote) run(ctx context.Context, cmd string, stdin io.Reader, show bool) (string, error) {
	c, err := r.client(ctx)
	if err != nil {
		return "", err
	}
	var out, errb bytes.Buffer
	var o, e io.Writer = &out, &errb
	if show {
		o = io.MultiWriter(&out, indent(r.ui.Err))
		e = io.MultiWriter(&errb, indent(r.ui.Err))
	}
	code, err := c.Run(ctx, cmd, stdin, o, e, false)
	if err != nil {
		return out.String(), fmt.Errorf("on %s, `%s`: %w", r.dest.Host, cmd, err)
	}
	if code != 0 {
		return out.String(), &RemoteError{Host: r.dest.Host, Command: cmd, Status: code, Stderr: tail(errb.String(), 30)}
	}
	return out.String(), nil
}

// indent writes what it is given with every line indented.
type indentWriter struct {
	w   io.Writer
	bol bool
}

func indent(w io.Writer) io.Writer { return &indentWriter{w: w, bol: true} }

func (iw *indentWriter) Write(p []byte) (int, error) {
	var b bytes.Buffer
	for _, c := range p {
		if iw.bol {
			b.WriteString("    ")
		}
		b.WriteByte(c)
		iw.bol = c == '\n'
	}
	_, err := iw.w.Write(b.Bytes())
	return len(p), err
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// hvName is the VM's name on the hypervisor (its nixosConfigurations name).
func (r *remote) hvName(name string) string { return r.machine(name).Config }

func (r *remote) vmDir(name string) string { return path.Join(r.stateDir, r.hvName(name)) }

func unit(hv string) string { return "microvm@" + hv }

// flakeRef is the absolute flake path on the hypervisor (`microvm -f` needs
// an absolute one).
func (r *remote) flakeRef() (string, error) {
	rel, err := r.flakeRel()
	if err != nil {
		return "", err
	}
	return path.Join(r.vf.MicroVM.Remote.Checkout, filepath.ToSlash(rel)), nil
}

// infos queries the hypervisor about the machines.
func (r *remote) infos(ctx context.Context, names []string) (map[string]vmInfo, error) {
	if _, err := r.client(ctx); err != nil {
		return nil, err
	}
	hv := make([]string, len(names))
	for i, n := range names {
		hv[i] = r.hvName(n)
	}
	out, err := r.query(ctx, infoScript(r.stateDir, hv))
	if err != nil {
		return nil, err
	}
	m, err := parseInfo(out)
	if err != nil {
		return nil, err
	}
	res := map[string]vmInfo{}
	for _, n := range names {
		res[n] = m[r.hvName(n)]
	}
	return res, nil
}

// sync brings the hypervisor's checkout up to date.
func (r *remote) sync(ctx context.Context) error {
	rm := r.vf.MicroVM.Remote
	if rm.Sync == "copy" {
		return r.copyFlake(ctx)
	}
	_, err := r.exec(ctx, "cd "+shq(rm.Checkout)+" && git pull --ff-only", nil, true)
	var re *RemoteError
	if errors.As(err, &re) {
		return fmt.Errorf("%w\nhint: commit and push your changes first (the hypervisor pulls them); if the hypervisor's checkout has diverged, fix it there by hand", err)
	}
	return err
}

// copyFlake streams the local flake directory (without .git and .devvm) as a
// tar archive into the hypervisor's checkout.
func (r *remote) copyFlake(ctx context.Context) error {
	rel, err := r.flakeRel()
	if err != nil {
		return err
	}
	src := filepath.Join(r.vf.Dir, rel)
	dst, _ := r.flakeRef()
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeTar(pw, src)) }()
	r.ui.Printf("copying the flake %s to %s:%s (like `tar -C %s -c . | ssh %s tar -x -C %s`)", src, r.dest.Host, dst, src, r.dest, dst)
	_, err = r.exec(ctx, "mkdir -p "+shq(dst)+" && tar -x -C "+shq(dst), pr, true)
	pr.Close()
	return err
}

func writeTar(w io.Writer, root string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() && (d.Name() == ".git" || d.Name() == state.LegacyDirName || d.Name() == "result") && rel != "." {
			return filepath.SkipDir
		}
		if rel == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("packing the flake %s: %w", root, err)
	}
	return tw.Close()
}

var (
	_ machine.Driver      = (*remote)(nil)
	_ machine.Preparer    = (*remote)(nil)
	_ machine.Updater     = (*remote)(nil)
	_ machine.LogStreamer = (*remote)(nil)
	_ machine.Rollbacker  = (*remote)(nil)
	_ machine.Runner      = (*remote)(nil)
	_ machine.Describer   = (*remote)(nil)
	_ machine.Closer      = (*remote)(nil)
	_ machine.Restarter   = (*remote)(nil)
	_ machine.Prebuilder  = (*remote)(nil)
)

// Identity implements machine.Driver: the hypervisor's systemd runs the VM,
// not a process of this host.
func (r *remote) Identity(m *machine.Machine) (string, string) { return "", "" }

// UpdatesRunning implements machine.Updater: `up` deploys to running VMs
// and restarts those whose runner changed, as the seed's `microvm -Ru`.
func (r *remote) UpdatesRunning() bool { return true }

// info queries the hypervisor about one machine.
func (r *remote) info(ctx context.Context, m *machine.Machine) (vmInfo, error) {
	in, err := r.infos(ctx, []string{m.Name})
	if err != nil {
		return vmInfo{}, err
	}
	return in[m.Name], nil
}

// Probe implements machine.Driver: the unit's state on the hypervisor.
func (r *remote) Probe(ctx context.Context, m *machine.Machine, rec *machine.Record) machine.Verdict {
	in, err := r.info(ctx, m)
	if err != nil {
		return machine.Verdict{State: backend.Broken, Reason: err.Error(), Err: err}
	}
	switch in.Active {
	case "active", "activating", "reloading":
		return machine.Verdict{State: backend.Running}
	case "failed":
		return machine.Verdict{State: backend.Failed, Reason: unit(r.hvName(m.Name)) + " failed: `devvm logs " + m.Name + "` shows why; `devvm up " + m.Name + "` starts it again"}
	case "deactivating":
		return machine.Verdict{State: backend.Broken, Reason: unit(r.hvName(m.Name)) + " is stopping"}
	}
	return machine.Verdict{State: backend.Stopped, Reason: classify(in, m.Name).Reason}
}

// Preflight implements machine.Driver.
func (r *remote) Preflight(ctx context.Context, m *machine.Machine) error { return nil }

// Prepare implements machine.Preparer: bring the hypervisor's checkout up to
// date once per command, and check that its flake defines the machines
// (deploy.go).
func (r *remote) Prepare(ctx context.Context, ms []*machine.Machine) error {
	if err := r.sync(ctx); err != nil {
		return err
	}
	flake, err := r.flakeRef()
	if err != nil {
		return err
	}
	var names []string
	for _, m := range ms {
		names = append(names, m.Name)
	}
	before, err := r.infos(ctx, names)
	if err != nil {
		return err
	}
	r.dep, err = r.newDeployer(ctx, flake, names, before)
	return err
}

// Build implements machine.Driver: deploy the VM on the hypervisor from what
// its state directory holds (deploy.go: `microvm -c`, `microvm -u`, or a
// switch of the hypervisor for VMs its configuration declares), keeping the
// runner it replaces as old with its own GC root.
func (r *remote) Build(ctx context.Context, m *machine.Machine, prev *machine.Build, opts backend.BuildOptions) (*machine.Build, error) {
	if r.dep == nil {
		if err := r.Prepare(ctx, []*machine.Machine{m}); err != nil {
			return nil, err
		}
	}
	before, err := r.info(ctx, m)
	if err != nil {
		return nil, err
	}
	hv := r.hvName(m.Name)
	keepOld, err := r.dep.deploy(ctx, m.Name, before)
	if err != nil {
		return nil, err
	}
	now, err := r.info(ctx, m)
	if err != nil {
		return nil, err
	}
	// A switch of the hypervisor restarts the VMs it changes itself.
	restarted := before.Booted != "" && now.Booted != before.Booted
	if keepOld && before.Current != "" && now.Current != before.Current {
		dir := r.vmDir(m.Name)
		cmd := fmt.Sprintf("ln -sfn %s %s && ln -sfn %s %s", shq(before.Current), shq(dir+"/old"), shq(dir+"/old"), shq(path.Join(r.gcRoots, "old-"+hv)))
		if _, err := r.exec(ctx, cmd, nil, true); err != nil {
			return nil, err
		}
	}
	if prev != nil && prev.Artifact == now.Current && !restarted {
		return prev, nil
	}
	return &machine.Build{Key: path.Base(now.Current), Artifact: now.Current, Root: r.vmDir(m.Name) + "/current",
		BuiltAt: r.env.Now(), Changed: now.Current != before.Current, Restarted: restarted}, nil
}

// Prebuild implements machine.Prebuilder: `devvm build` builds each runner
// on the hypervisor without touching the VMs.
func (r *remote) Prebuild(ctx context.Context, m *machine.Machine) error {
	flake, err := r.flakeRef()
	if err != nil {
		return err
	}
	_, err = r.exec(ctx, nixCmd("build", "--no-link", "--print-out-paths", flake+"#nixosConfigurations."+r.hvName(m.Name)+".config.microvm.declaredRunner"), nil, true)
	return err
}

// Start implements machine.Driver: systemctl start, then check that systemd
// really runs it (a start skipped by the unit's ConditionPathExists
// succeeds and leaves the unit inactive).
func (r *remote) Start(ctx context.Context, m *machine.Machine, b *machine.Build, fg bool) (*machine.Record, error) {
	if fg {
		return nil, fmt.Errorf("microvm.nix VMs on a hypervisor run under systemd; `devvm run %s` runs one in the foreground (microvm -r)", m.Name)
	}
	return r.systemctl(ctx, m, b, "start")
}

// RestartMachine implements machine.Restarter: `systemctl restart`.
func (r *remote) RestartMachine(ctx context.Context, m *machine.Machine, b *machine.Build) (*machine.Record, error) {
	return r.systemctl(ctx, m, b, "restart")
}

// systemctl starts or restarts the VM's unit and checks that systemd really
// runs it.
func (r *remote) systemctl(ctx context.Context, m *machine.Machine, b *machine.Build, verb string) (*machine.Record, error) {
	hv := r.hvName(m.Name)
	if _, err := r.exec(ctx, "systemctl "+verb+" "+unit(hv), nil, true); err != nil {
		return nil, err
	}
	in, err := r.info(ctx, m)
	if err != nil {
		return nil, err
	}
	if in.Active != "active" {
		run := r.vmDir(m.Name) + "/current/bin/microvm-run"
		if _, err := r.exec(ctx, "test -x "+shq(run), nil, false); err != nil {
			return nil, fmt.Errorf("systemd skipped the start of %s (VM %q): its ConditionPathExists=%s is not met, so `systemctl start` succeeded without starting anything; the runner has no bin/microvm-run (check the VM's microvm.hypervisor, or rebuild with `devvm up %s`)", unit(hv), m.Name, run, m.Name)
		}
		return nil, fmt.Errorf("%s (VM %q) is %s after its start; `devvm logs %s` (journalctl -u %s) shows why", unit(hv), m.Name, in.Active, m.Name, unit(hv))
	}
	mm := r.machine(m.Name)
	return &machine.Record{SSHHost: mm.Address, SSHPort: mm.Port, BuildKey: b.Key, Artifact: b.Artifact, Started: r.env.Now()}, nil
}

// Outdated implements machine.Driver: systemd booted another runner than
// the current one.
func (r *remote) Outdated(ctx context.Context, m *machine.Machine, rec *machine.Record) string {
	in, err := r.info(ctx, m)
	if err != nil || in.Booted == "" || in.Booted == in.Current {
		return ""
	}
	return fmt.Sprintf("booted %s but current is %s", path.Base(in.Booted), path.Base(in.Current))
}

// Stops implements machine.Driver: `systemctl stop`, which runs the VM's
// microvm-shutdown.
func (r *remote) Stops(m *machine.Machine, rec *machine.Record) []machine.Stop {
	return []machine.Stop{{Name: "systemctl stop " + unit(r.hvName(m.Name)), Do: func(ctx context.Context) error {
		_, err := r.exec(ctx, "systemctl stop "+unit(r.hvName(m.Name)), nil, true)
		return err
	}}}
}

// Clean implements machine.Driver: the VM's directory and GC roots on the
// hypervisor.
func (r *remote) Clean(ctx context.Context, m *machine.Machine) error {
	hv := r.hvName(m.Name)
	var roots []string
	for _, p := range []string{hv, "booted-" + hv, "old-" + hv} {
		roots = append(roots, shq(path.Join(r.gcRoots, p)))
	}
	if _, err := r.exec(ctx, "rm -rf "+shq(r.vmDir(m.Name))+" "+strings.Join(roots, " "), nil, true); err != nil {
		return err
	}
	r.ui.Printf("VM %q: %s and its GC roots are gone from %s", m.Name, r.vmDir(m.Name), r.dest.Host)
	return nil
}

// Describe implements machine.Describer.
func (r *remote) Describe(m *machine.Machine, rec *machine.Record, s *backend.Status) {
	mm := r.machine(m.Name)
	s.SSH = hostPort(mm.Address, mm.Port)
	if !mm.Routed {
		s.SSH += " via " + r.dest.Host
	}
	outdatedHint(m, s)
}

// outdatedHint says how a microvm is brought to its current runner.
func outdatedHint(m *machine.Machine, s *backend.Status) {
	if s.Outdated {
		s.Hint = fmt.Sprintf("`devvm restart %s` boots the current runner", m.Name)
	}
}

// target is how devvm reaches a guest: through the hypervisor as jump host,
// or directly when the Vmfile says its address is routed.
func (r *remote) Target(m *machine.Machine, rec *machine.Record) (*sshx.Target, error) {
	mm := r.machine(m.Name)
	k, err := r.userKey()
	if err != nil {
		return nil, err
	}
	t := &sshx.Target{Addr: hostPort(mm.Address, mm.Port), User: mm.User, Key: k, UseAgent: true,
		KnownHosts: m.VM.KnownHosts(), HostKeyAlias: sshx.HostAlias(m.Name), AgentForward: r.vf.SSH.ForwardAgent,
		HandshakeTimeout: 10 * time.Second}
	if t.ExtraKeys, err = r.machineKeys(m.Name); err != nil {
		return nil, err
	}
	if r.hvT.Key != nil && r.hvT.Key != k {
		// Guests that authorize only their owners' keys: the hypervisor's.
		t.ExtraKeys = append(t.ExtraKeys, r.hvT.Key)
	}
	if !mm.Routed {
		j := *r.hvT
		t.Jump = &j
	}
	return t, nil
}

func hostPort(host string, port int) string {
	return fmt.Sprintf("%s:%d", strings.Trim(host, "[]"), port)
}

// hvHost is the ssh_config Host of the hypervisor.
func (r *remote) hvHost() string {
	h := strings.NewReplacer(":", "-", "[", "", "]", "").Replace(r.dest.Host)
	return "devvm-hypervisor-" + h
}

// SSHConfig implements machine.Driver: the guest's stanza with a ProxyJump
// through the hypervisor's stanza (or alone when routed).
func (r *remote) SSHConfig(m *machine.Machine, rec *machine.Record) (string, error) {
	k, err := r.userKey()
	if err != nil {
		return "", err
	}
	mm := r.machine(m.Name)
	guest := sshx.ConfigOptions{
		Host: sshx.HostAlias(m.Name), HostName: mm.Address, Port: fmt.Sprint(mm.Port), User: mm.User,
		IdentityFile: k.PrivatePath, KnownHosts: m.VM.KnownHosts(), HostKeyAlias: sshx.HostAlias(m.Name),
		ForwardAgent: r.vf.SSH.ForwardAgent,
	}
	if mm.Routed {
		return sshx.SSHConfig(guest)
	}
	guest.ProxyJump = r.hvHost()
	g, err := sshx.SSHConfig(guest)
	if err != nil {
		return "", err
	}
	hk := r.hvT.Key
	h, err := sshx.SSHConfig(sshx.ConfigOptions{
		Host: r.hvHost(), HostName: r.dest.Host, Port: fmt.Sprint(r.dest.Port), User: r.dest.User,
		IdentityFile: hk.PrivatePath, KnownHosts: r.hvT.KnownHosts, HostKeyAlias: knownhosts.Normalize(r.dest.Addr()),
	})
	if err != nil {
		return "", err
	}
	return g + "\n" + h, nil
}

// Rollback implements machine.Rollbacker: the current runner points back at
// the previous one (kept as old by devvm's updates), which is kept as old.
func (r *remote) Rollback(ctx context.Context, m *machine.Machine) (*machine.Build, error) {
	in, err := r.info(ctx, m)
	if err != nil {
		return nil, err
	}
	if declaredByHost(in, r.vmDir(m.Name)) {
		return r.rollbackDeclared(ctx, m, in)
	}
	switch {
	case !in.Exists:
		return nil, fmt.Errorf("VM %q does not exist on the hypervisor: nothing to roll back", m.Name)
	case in.Old == "":
		return nil, fmt.Errorf("VM %q has no previous runner (%s/old): devvm records one when an update changes the runner, so there is nothing to roll back to", m.Name, r.vmDir(m.Name))
	case in.Current == "":
		return nil, fmt.Errorf("VM %q has no current runner (%s/current is missing)", m.Name, r.vmDir(m.Name))
	}
	dir := r.vmDir(m.Name)
	cmd := fmt.Sprintf("ln -sfn %s %s && ln -sfn %s %s", shq(in.Old), shq(dir+"/current"), shq(in.Current), shq(dir+"/old"))
	if _, err := r.exec(ctx, cmd, nil, true); err != nil {
		return nil, err
	}
	r.ui.Printf("VM %q: current runner is now %s (was %s, kept as old)", m.Name, path.Base(in.Old), path.Base(in.Current))
	return &machine.Build{Key: path.Base(in.Old), Artifact: in.Old, Root: dir + "/current", BuiltAt: r.env.Now()}, nil
}

// rollbackDeclared switches the hypervisor back to its previous generation
// (once per command) when the VM is installed by the hypervisor's own
// configuration (deploy.go), and returns what the VM then runs.
func (r *remote) rollbackDeclared(ctx context.Context, m *machine.Machine, in vmInfo) (*machine.Build, error) {
	if !r.hostRolledBack {
		if _, err := r.rollbackHost(ctx, []string{m.Name}, map[string]vmInfo{m.Name: in}); err != nil {
			return nil, err
		}
		r.hostRolledBack = true
	}
	now, err := r.info(ctx, m)
	if err != nil {
		return nil, err
	}
	return &machine.Build{Key: path.Base(now.Current), Artifact: now.Current, Root: r.vmDir(m.Name) + "/current", BuiltAt: r.env.Now()}, nil
}

// GC implements machine.Driver: remove gcroots under the microvm gcroots
// directory whose VM directory is gone (left by a VM removed by hand), then
// run nix-collect-garbage on the hypervisor. Runners of existing VMs
// (current, booted, old) are kept.
func (r *remote) GC(ctx context.Context, ts []machine.GCTarget, opts backend.GCOptions) (*backend.GCReport, error) {
	if _, err := r.client(ctx); err != nil {
		return nil, err
	}
	script := "for f in " + shq(r.gcRoots) + `/*; do [ -L "$f" ] && printf '%s\t%s\n' "$f" "$(readlink "$f")"; done; true`
	out, err := r.exec(ctx, script, nil, false)
	if err != nil {
		return nil, err
	}
	rep := &backend.GCReport{FreedBytes: -1}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		root, target, ok := strings.Cut(line, "\t")
		if !ok {
			continue
		}
		rel, inState := strings.CutPrefix(target, r.stateDir+"/")
		if !inState {
			continue
		}
		vmName, _, _ := strings.Cut(rel, "/")
		if _, err := r.exec(ctx, "test -d "+shq(path.Join(r.stateDir, vmName)), nil, false); err == nil {
			continue
		}
		rep.Roots = append(rep.Roots, root)
	}
	if opts.DryRun {
		return rep, nil
	}
	if len(rep.Roots) > 0 {
		if _, err := r.exec(ctx, "rm -f "+strings.Join(quoteAll(rep.Roots), " "), nil, true); err != nil {
			return rep, err
		}
	}
	out, err = r.exec(ctx, "nix-collect-garbage", nil, false)
	if err != nil {
		return rep, err
	}
	rep.StoreGC, rep.FreedBytes = true, parseFreed(out)
	return rep, nil
}

// StreamLogs implements machine.LogStreamer: the unit's journal, streamed.
func (r *remote) StreamLogs(ctx context.Context, m *machine.Machine, opts backend.LogOptions, w io.Writer) error {
	c, err := r.client(ctx)
	if err != nil {
		return err
	}
	cmd := "journalctl -u " + unit(r.hvName(m.Name)) + " --no-pager"
	if opts.Lines > 0 {
		cmd += fmt.Sprintf(" -n %d", opts.Lines)
	}
	if opts.Follow {
		cmd += " -f"
	}
	r.ui.Printf("%s$ %s", r.dest.Host, cmd)
	var errb bytes.Buffer
	code, err := c.Run(ctx, cmd, nil, w, &errb, false)
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return err
	}
	if code != 0 {
		return &RemoteError{Host: r.dest.Host, Command: cmd, Status: code, Stderr: tail(errb.String(), 30)}
	}
	return nil
}

// Run implements machine.Runner: `microvm -r NAME` on the hypervisor in the
// foreground on this terminal (a pty when stdin is one). The lifecycle has
// checked that systemd does not run it: a second hypervisor would fight over
// its sockets, tap and disks.
func (r *remote) Run(ctx context.Context, m *machine.Machine) error {
	in, err := r.info(ctx, m)
	if err != nil {
		return err
	}
	if !in.Exists {
		return fmt.Errorf("VM %q does not exist on the hypervisor: `devvm up %s` creates it", m.Name, m.Name)
	}
	c, err := r.client(ctx)
	if err != nil {
		return err
	}
	cmd := "microvm -r " + shq(r.hvName(m.Name))
	r.ui.Printf("%s$ %s   (the VM stops when this command ends)", r.dest.Host, cmd)
	code, err := c.Interactive(ctx, sshx.InteractiveOptions{Command: cmd, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("`%s` on %s exited with status %d", cmd, r.dest.Host, code)
	}
	return nil
}
