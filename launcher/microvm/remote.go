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
	"github.com/devvm/devvm/launcher/sshx"
	"github.com/devvm/devvm/launcher/state"
	"golang.org/x/crypto/ssh"
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

// readyPoll is how often `up` tries a guest's SSH while it boots.
const readyPoll = 500 * time.Millisecond

// remote runs the VMs on a NixOS hypervisor over SSH.
type remote struct {
	*common
	dest dest
	hvT  *sshx.Target

	mu       sync.Mutex
	hv       *sshx.Client
	stateDir string
	gcRoots  string
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
	c, err := r.client(ctx)
	if err != nil {
		return "", err
	}
	r.ui.Printf("%s$ %s", r.dest.Host, cmd)
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
	out, err := r.exec(ctx, infoScript(r.stateDir, hv), nil, false)
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
		if d.IsDir() && (d.Name() == ".git" || d.Name() == state.DirName || d.Name() == "result") && rel != "." {
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

// Build implements backend.Backend: sync, then build every runner on the
// hypervisor without touching the VMs.
func (r *remote) Build(ctx context.Context, opts backend.BuildOptions) error {
	if err := r.sync(ctx); err != nil {
		return err
	}
	flake, err := r.flakeRef()
	if err != nil {
		return err
	}
	for _, n := range r.names {
		cmd := nixCmd("build", "--no-link", "--print-out-paths", flake+"#nixosConfigurations."+r.hvName(n)+".config.microvm.declaredRunner")
		if _, err := r.exec(ctx, cmd, nil, true); err != nil {
			return err
		}
	}
	return nil
}

// Up implements backend.Backend (`devvm up` / `devvm deploy`).
func (r *remote) Up(ctx context.Context, names []string, opts backend.UpOptions) error {
	names, err := r.pick(names)
	if err != nil {
		return err
	}
	if opts.Foreground {
		return fmt.Errorf("microvm.nix VMs on a hypervisor run under systemd; `devvm run NAME` runs one in the foreground (microvm -r)")
	}
	unlock, err := r.lock(names, "devvm up")
	if err != nil {
		return err
	}
	defer unlock()
	if err := r.sync(ctx); err != nil {
		return err
	}
	flake, err := r.flakeRef()
	if err != nil {
		return err
	}
	before, err := r.infos(ctx, names)
	if err != nil {
		return err
	}
	// deploy.go: create, update, re-point or switch, from what DIR holds.
	d, err := r.newDeployer(ctx, flake, names, before)
	if err != nil {
		return err
	}
	var restarted, started, unchanged []string
	for _, n := range names {
		hv, in := r.hvName(n), before[n]
		keepOld, err := d.deploy(ctx, n, in)
		if err != nil {
			return err
		}
		after, err := r.infos(ctx, []string{n})
		if err != nil {
			return err
		}
		now := after[n]
		if keepOld && in.Current != "" && now.Current != in.Current {
			dir := r.vmDir(n)
			cmd := fmt.Sprintf("ln -sfn %s %s && ln -sfn %s %s", shq(in.Current), shq(dir+"/old"), shq(dir+"/old"), shq(path.Join(r.gcRoots, "old-"+hv)))
			if _, err := r.exec(ctx, cmd, nil, true); err != nil {
				return err
			}
		}
		switch {
		case now.Active != "active":
			if _, err := r.exec(ctx, "systemctl start "+unit(hv), nil, true); err != nil {
				return err
			}
			started = append(started, n)
		case now.Booted != now.Current:
			r.stopShares(ctx, n)
			if _, err := r.exec(ctx, "systemctl restart "+unit(hv), nil, true); err != nil {
				return err
			}
			restarted = append(restarted, n)
		case in.Booted != "" && now.Booted != in.Booted: // restarted by a host switch (deploy.go)
			restarted = append(restarted, n)
		default:
			unchanged = append(unchanged, n)
		}
	}
	if err := r.verifyActive(ctx, append(append([]string{}, started...), restarted...)); err != nil {
		return err
	}
	r.ui.Printf("deployed: restarted %s; started %s; unchanged %s", list(restarted), list(started), list(unchanged))
	fresh := map[string]bool{}
	for _, n := range append(append([]string{}, started...), restarted...) {
		fresh[n] = true
	}
	return r.waitAll(ctx, names, fresh, opts.Timeout)
}

func list(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// verifyActive checks that systemd really runs each VM after a start: a start
// skipped by the unit's ConditionPathExists returns success and leaves the
// unit inactive.
func (r *remote) verifyActive(ctx context.Context, names []string) error {
	if len(names) == 0 {
		return nil
	}
	infos, err := r.infos(ctx, names)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		in := infos[n]
		if in.Active == "active" {
			continue
		}
		hv := r.hvName(n)
		run := r.vmDir(n) + "/current/bin/microvm-run"
		if _, err := r.exec(ctx, "test -x "+shq(run), nil, false); err != nil {
			errs = append(errs, fmt.Errorf("systemd skipped the start of %s (VM %q): its ConditionPathExists=%s is not met, so `systemctl start` succeeded without starting anything; the runner has no bin/microvm-run (check the VM's microvm.hypervisor, or rebuild with `devvm up %s`)", unit(hv), n, run, n))
			continue
		}
		errs = append(errs, fmt.Errorf("%s (VM %q) is %s after its start; `devvm logs %s` (journalctl -u %s) shows why", unit(hv), n, in.Active, n, unit(hv)))
	}
	return errors.Join(errs...)
}

// waitAll waits for the SSH of every machine in parallel. fresh machines were
// just booted: their host key is pinned anew; the others are verified
// against the pinned key (pinned now if there is none yet).
func (r *remote) waitAll(ctx context.Context, names []string, fresh map[string]bool, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = r.vf.BootTimeout.D()
	}
	var wg sync.WaitGroup
	errs := make([]error, len(names))
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.waitReady(ctx, n, fresh[n], timeout)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (r *remote) waitReady(ctx context.Context, name string, fresh bool, timeout time.Duration) error {
	t, err := r.target(name)
	if err != nil {
		return err
	}
	v := r.vm(name)
	if err := os.MkdirAll(v.Dir(), 0o755); err != nil {
		return err
	}
	_, statErr := os.Stat(t.KnownHosts)
	pin := fresh || statErr != nil
	via := "through " + r.dest.Host
	if r.machine(name).Routed {
		via = "directly (routed)"
	}
	r.ui.Printf("waiting for SSH of %s on %s %s", name, t.Addr, via)
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := r.env.Now()
	c, err := sshx.WaitReady(wctx, *t, readyPoll, pin)
	if err != nil {
		err = explainLogin(err, name, t) // login.go: which keys were offered
		return fmt.Errorf("VM %q did not accept SSH on %s within %s: %w\nhint: `devvm logs %s` shows its console (journalctl -u %s)", name, t.Addr, timeout, err, name, unit(r.hvName(name)))
	}
	c.Close()
	text, err := r.sshConfigText(name)
	if err != nil {
		return err
	}
	if err := state.WriteFileAtomic(v.SSHConfig(), []byte(text), 0o644); err != nil {
		return err
	}
	r.register(name)
	r.ui.Printf("VM %q is ready after %.1fs: `devvm ssh %s` (or ssh -F %s %s)", name, r.env.Now().Sub(start).Seconds(), name, v.SSHConfig(), alias(name))
	var authKeys []string
	if len(t.Auth) > 0 {
		authKeys = []string{r.hvT.Key.PrivatePath}
	}
	return r.startShares(ctx, name, t, authKeys)
}

// target is how devvm reaches a guest: through the hypervisor as jump host,
// or directly when the Vmfile says its address is routed.
func (r *remote) target(name string) (*sshx.Target, error) {
	m := r.machine(name)
	k, err := r.userKey()
	if err != nil {
		return nil, err
	}
	t := &sshx.Target{Addr: hostPort(m.Address, m.Port), User: m.User, Key: k, UseAgent: true,
		KnownHosts: r.vm(name).KnownHosts(), HostKeyAlias: alias(name), AgentForward: r.vf.SSH.ForwardAgent,
		HandshakeTimeout: 10 * time.Second}
	if r.hvT.Key != nil && r.hvT.Key != k {
		t.Auth = []ssh.AuthMethod{ssh.PublicKeys(r.hvT.Key.Signer)}
	}
	if !m.Routed {
		j := *r.hvT
		t.Jump = &j
	}
	return t, nil
}

func hostPort(host string, port int) string {
	return fmt.Sprintf("%s:%d", strings.Trim(host, "[]"), port)
}

// SSHTarget implements backend.Backend.
func (r *remote) SSHTarget(ctx context.Context, name string) (*sshx.Target, error) {
	if _, err := r.pick([]string{name}); err != nil {
		return nil, err
	}
	return r.target(name)
}

// hvHost is the ssh_config Host of the hypervisor.
func (r *remote) hvHost() string {
	h := strings.NewReplacer(":", "-", "[", "", "]", "").Replace(r.dest.Host)
	return "devvm-hypervisor-" + h
}

func (r *remote) sshConfigText(name string) (string, error) {
	k, err := r.userKey()
	if err != nil {
		return "", err
	}
	m := r.machine(name)
	guest := sshx.ConfigOptions{
		Host: alias(name), HostName: m.Address, Port: fmt.Sprint(m.Port), User: m.User,
		IdentityFile: k.PrivatePath, KnownHosts: r.vm(name).KnownHosts(), HostKeyAlias: alias(name),
		ForwardAgent: r.vf.SSH.ForwardAgent,
	}
	if m.Routed {
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

// SSHConfig implements backend.Backend: the guest's stanza with a ProxyJump
// through the hypervisor's stanza (or alone when routed).
func (r *remote) SSHConfig(ctx context.Context, name string) (string, error) {
	if _, err := r.pick([]string{name}); err != nil {
		return "", err
	}
	return r.sshConfigText(name)
}

// Status implements backend.Backend.
func (r *remote) Status(ctx context.Context, names []string) ([]backend.Status, error) {
	names, err := r.pick(names)
	if err != nil {
		return nil, err
	}
	infos, err := r.infos(ctx, names)
	if err != nil {
		return nil, err
	}
	var out []backend.Status
	for _, n := range names {
		s := classify(infos[n], n)
		m := r.machine(n)
		s.SSH = hostPort(m.Address, m.Port)
		if !m.Routed {
			s.SSH += " via " + r.dest.Host
		}
		s.Checkout = r.vf.Dir
		if s.State == backend.Running || s.State == backend.Outdated {
			s.Shares = r.shareStatus(n)
		}
		out = append(out, s)
	}
	return out, nil
}

// Halt implements backend.Backend: systemctl stop, then check that the unit is
// no longer active.
func (r *remote) Halt(ctx context.Context, names []string, opts backend.HaltOptions) error {
	names, err := r.pick(names)
	if err != nil {
		return err
	}
	unlock, err := r.lock(names, "devvm halt")
	if err != nil {
		return err
	}
	defer unlock()
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}
	return r.stop(ctx, names)
}

func (r *remote) stop(ctx context.Context, names []string) error {
	for _, n := range names {
		start := r.env.Now()
		// Share servers unmount in the guest while it still runs.
		r.stopShares(ctx, n)
		if _, err := r.exec(ctx, "systemctl stop "+unit(r.hvName(n)), nil, true); err != nil {
			return err
		}
		in, err := r.infos(ctx, []string{n})
		if err != nil {
			return err
		}
		if in[n].Active == "active" || in[n].Active == "deactivating" {
			return fmt.Errorf("%s (VM %q) is still %s after `systemctl stop`; look at `devvm logs %s`", unit(r.hvName(n)), n, in[n].Active, n)
		}
		r.ui.Printf("VM %q halted in %.1fs", n, r.env.Now().Sub(start).Seconds())
	}
	return nil
}

// Restart restarts VMs with systemd, checks that they run and waits for SSH.
func (r *remote) Restart(ctx context.Context, names []string) error {
	names, err := r.pick(names)
	if err != nil {
		return err
	}
	unlock, err := r.lock(names, "devvm restart")
	if err != nil {
		return err
	}
	defer unlock()
	return r.restart(ctx, names)
}

func (r *remote) restart(ctx context.Context, names []string) error {
	units := make([]string, len(names))
	fresh := map[string]bool{}
	for i, n := range names {
		units[i] = unit(r.hvName(n))
		fresh[n] = true
		r.stopShares(ctx, n)
	}
	if _, err := r.exec(ctx, "systemctl restart "+strings.Join(units, " "), nil, true); err != nil {
		return err
	}
	if err := r.verifyActive(ctx, names); err != nil {
		return err
	}
	return r.waitAll(ctx, names, fresh, 0)
}

// Rollback points each VM's current runner back at the previous one (kept as
// `old` by devvm's updates), keeps the one it replaces as `old`, restarts and
// waits for SSH.
func (r *remote) Rollback(ctx context.Context, names []string) error {
	names, err := r.pick(names)
	if err != nil {
		return err
	}
	unlock, err := r.lock(names, "devvm rollback")
	if err != nil {
		return err
	}
	defer unlock()
	infos, err := r.infos(ctx, names)
	if err != nil {
		return err
	}
	// deploy.go: VMs the hypervisor's configuration installs roll back with it.
	links, err := r.rollbackHost(ctx, names, infos)
	if err != nil {
		return err
	}
	for _, n := range links {
		in := infos[n]
		switch {
		case !in.Exists:
			return fmt.Errorf("VM %q does not exist on the hypervisor: nothing to roll back", n)
		case in.Old == "":
			return fmt.Errorf("VM %q has no previous runner (%s/old): devvm records one when an update changes the runner, so there is nothing to roll back to", n, r.vmDir(n))
		case in.Current == "":
			return fmt.Errorf("VM %q has no current runner (%s/current is missing)", n, r.vmDir(n))
		}
		dir := r.vmDir(n)
		cmd := fmt.Sprintf("ln -sfn %s %s && ln -sfn %s %s", shq(in.Old), shq(dir+"/current"), shq(in.Current), shq(dir+"/old"))
		if _, err := r.exec(ctx, cmd, nil, true); err != nil {
			return err
		}
		r.ui.Printf("VM %q: current runner is now %s (was %s, kept as old)", n, path.Base(in.Old), path.Base(in.Current))
	}
	return r.restart(ctx, names)
}

// Destroy implements backend.Backend: stop, remove the VM's directory and
// gcroots on the hypervisor, and devvm's local state.
func (r *remote) Destroy(ctx context.Context, names []string, opts backend.DestroyOptions) error {
	names, err := r.pick(names)
	if err != nil {
		return err
	}
	unlock, err := r.lock(names, "devvm destroy")
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := r.client(ctx); err != nil {
		return err
	}
	if !opts.Force && r.ui.In != nil {
		if !r.confirm(fmt.Sprintf("destroy %s on %s (stop them and delete their state under %s)?", strings.Join(names, ", "), r.dest.Host, r.stateDir)) {
			return fmt.Errorf("not destroyed")
		}
	}
	if err := r.stop(ctx, names); err != nil {
		return fmt.Errorf("%v\nnothing was deleted", err)
	}
	for _, n := range names {
		hv := r.hvName(n)
		var roots []string
		for _, p := range []string{hv, "booted-" + hv, "old-" + hv} {
			roots = append(roots, shq(path.Join(r.gcRoots, p)))
		}
		if _, err := r.exec(ctx, "rm -rf "+shq(r.vmDir(n))+" "+strings.Join(roots, " "), nil, true); err != nil {
			return err
		}
		if err := r.forgetLocal(n); err != nil {
			return err
		}
		r.ui.Printf("VM %q destroyed: %s and its GC roots are gone", n, r.vmDir(n))
	}
	if opts.GC {
		out, err := r.exec(ctx, "nix-collect-garbage", nil, false)
		if err != nil {
			return err
		}
		r.ui.Printf("nix-collect-garbage freed %s", backend.HumanBytes(parseFreed(out)))
	}
	return nil
}

// GC implements backend.Backend: remove gcroots under the microvm gcroots
// directory whose VM directory is gone (left by a VM removed by hand), then
// run nix-collect-garbage on the hypervisor. Runners of existing VMs
// (current, booted, old) are kept.
func (r *remote) GC(ctx context.Context, opts backend.GCOptions) (*backend.GCReport, error) {
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

// Logs implements backend.Backend: the unit's journal, streamed.
func (r *remote) Logs(ctx context.Context, name string, opts backend.LogOptions, w io.Writer) error {
	if _, err := r.pick([]string{name}); err != nil {
		return err
	}
	c, err := r.client(ctx)
	if err != nil {
		return err
	}
	cmd := "journalctl -u " + unit(r.hvName(name)) + " --no-pager"
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

// Console implements backend.Backend: microvm.nix VMs have no attachable console.
func (r *remote) Console(ctx context.Context, name string, in *os.File, out io.Writer) error {
	return fmt.Errorf("microvm.nix VMs have no attachable serial console (microvm-console was removed in microvm.nix 0.4.0): `devvm logs %s -f` follows the console output, `devvm run %s` runs the VM in the foreground", name, name)
}

// Run runs `microvm -r NAME` on the hypervisor in the foreground on this
// terminal (a pty when stdin is one). The VM must not be running under
// systemd: a second hypervisor would fight over its sockets, tap and disks.
func (r *remote) Run(ctx context.Context, name string) error {
	if _, err := r.pick([]string{name}); err != nil {
		return err
	}
	infos, err := r.infos(ctx, []string{name})
	if err != nil {
		return err
	}
	if in := infos[name]; !in.Exists {
		return fmt.Errorf("VM %q does not exist on the hypervisor: `devvm up %s` creates it", name, name)
	} else if in.Active == "active" || in.Active == "activating" {
		return fmt.Errorf("VM %q is running under systemd (%s): `devvm halt %s` first; microvm -r would start a second hypervisor on the same sockets and disks", name, unit(r.hvName(name)), name)
	}
	c, err := r.client(ctx)
	if err != nil {
		return err
	}
	cmd := "microvm -r " + shq(r.hvName(name))
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
