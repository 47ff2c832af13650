// Package guixvm is the machine.Driver of Guix System VMs run by local
// QEMU: build with `guix time-machine … -- system vm`, start the QEMU of the
// built run-vm.sh detached (or in the foreground), stop it with the guest's
// own power-off and QMP, attach its serial console, collect old builds.
package guixvm

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/guix"
	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/machine"
	"github.com/devvm/devvm/launcher/project"
	"github.com/devvm/devvm/launcher/qemu"
	"github.com/devvm/devvm/launcher/qmp"
	"github.com/devvm/devvm/launcher/sshx"
	"github.com/devvm/devvm/launcher/state"
	"github.com/devvm/devvm/launcher/vmfile"
)

// Driver drives the one Guix System VM of a Vmfile.
type Driver struct {
	vf  *vmfile.Vmfile
	env *hostenv.Env
	ui  *backend.UI
}

var (
	_ machine.Driver     = (*Driver)(nil)
	_ machine.PowerOffer = (*Driver)(nil)
	_ machine.Consoler   = (*Driver)(nil)
	_ machine.Adopter    = (*Driver)(nil)
)

// New returns the driver of a Vmfile with backend = "guix".
func New(vf *vmfile.Vmfile, env *hostenv.Env, ui *backend.UI) *Driver {
	return &Driver{vf: vf, env: env, ui: ui}
}

// Kind implements machine.Driver.
func (d *Driver) Kind() string { return vmfile.BackendGuix }

// Machines implements machine.Driver.
func (d *Driver) Machines() []string { return []string{d.vf.Name} }

// Identity implements machine.Driver: QEMU runs with -name <marker> and
// holds a lock on its -pidfile.
func (d *Driver) Identity(m *machine.Machine) (string, string) { return m.VM.Marker(), m.VM.Pidfile() }

// PowerOffCommand implements machine.PowerOffer. A Guix System has no
// `poweroff` (%base-packages, guix:gnu/system.scm:945-997) and its
// `shutdown` is Shepherd's `halt`, which rejects `-h`; Shepherd's `halt`
// powers off (guix-guest-facts.md 1a-1c). Busybox's `halt` does not power
// off, hence `poweroff` first for guests that have it.
func (d *Driver) PowerOffCommand() string { return "sudo -n poweroff || sudo -n halt" }

func (d *Driver) guixCommand() string {
	if d.vf.Guix.Command != "" {
		return d.vf.Guix.Command
	}
	return "guix"
}

// userKey returns devvm's user key, creating it on first need.
func (d *Driver) userKey() (*sshx.Key, error) { return sshx.EnsureUserKey(d.env.DataDir) }

// writeAuthorizedKeys writes the checkout's authorized_keys in devvm's state
// (never in the checkout): devvm's key plus the Vmfile's ssh.authorized_keys.
func (d *Driver) writeAuthorizedKeys(m *machine.Machine) error {
	k, err := d.userKey()
	if err != nil {
		return err
	}
	var b bytes.Buffer
	b.Write(bytes.TrimSpace(k.AuthorizedLine))
	b.WriteByte('\n')
	for i, ak := range d.vf.SSH.AuthorizedKeys {
		line := ak
		if t := strings.TrimSpace(ak); !strings.HasPrefix(t, "ssh-") && !strings.HasPrefix(t, "ecdsa-") {
			data, err := os.ReadFile(d.vf.Resolve(ak))
			if err != nil {
				return fmt.Errorf("%s: ssh.authorized_keys[%d]: %v (give a public key file or a literal \"ssh-ed25519 AAAA…\" line)", d.vf.Path, i, err)
			}
			line = string(data)
		}
		b.WriteString(strings.TrimSpace(line) + "\n")
	}
	if err := m.VM.Ensure(); err != nil {
		return err
	}
	return state.WriteFileIfChanged(m.VM.AuthorizedKeys(), b.Bytes(), 0o644)
}

// contract is what the build-time wrapper adds to the project's config,
// from the Vmfile (templates/wrapper/devvm-vm.scm).
func (d *Driver) contract(m *machine.Machine) guix.Contract {
	c := guix.Contract{ProjectConfig: d.vf.Resolve(d.vf.Guix.Config), User: d.vf.SSH.User, UID: project.GuestUID(d.vf.Dir),
		AuthorizedKeysFile: m.VM.AuthorizedKeys()}
	if d.vf.Guix.Manifest != "" {
		c.Packages = d.vf.Resolve(d.vf.Guix.Manifest)
	}
	for _, s := range d.vf.Shares {
		if s.Mode == vmfile.ShareSSH {
			continue // mounted by devvm over SSH, not by the guest's config
		}
		c.Shares = append(c.Shares, guix.Share{Tag: s.Tag, Guest: s.Guest, ReadOnly: s.ReadOnly})
	}
	return c
}

func (d *Driver) loadPath() []string {
	var out []string
	for _, p := range d.vf.Guix.LoadPath {
		out = append(out, d.vf.Resolve(p))
	}
	return out
}

func (d *Driver) inputs(m *machine.Machine) guix.Inputs {
	var shares []string
	for _, s := range d.vf.Shares {
		shares = append(shares, fmt.Sprintf("%s:%s:%v:%s", s.Tag, s.Guest, s.ReadOnly, s.Mode))
	}
	in := guix.Inputs{
		Config:   d.vf.Resolve(d.vf.Guix.Config),
		Channels: d.vf.Resolve(d.vf.Guix.Channels),
		Wrapper:  filepath.Join(m.VM.Dir(), guix.WrapperName),
		LoadPath: d.loadPath(),
		Settings: map[string]string{
			"name":       d.vf.Name,
			"ssh.user":   d.vf.SSH.User,
			"shares":     strings.Join(shares, " "),
			"persistent": fmt.Sprint(d.vf.Persistent),
			"disk":       fmt.Sprint(d.vf.Disk.Bytes()),
			"auth":       fmt.Sprint(!d.vf.Guix.DisableAuthentication),
		},
	}
	if d.vf.Guix.Manifest != "" {
		in.Manifest = d.vf.Resolve(d.vf.Guix.Manifest)
	}
	return in
}

// currentKey is the build key of the inputs as they are now: the recorded
// build's key when these inputs were shown to give its derivation (Same).
func (d *Driver) currentKey(m *machine.Machine) (string, error) {
	key, err := d.fastKey(m)
	if err != nil {
		return "", err
	}
	var b machine.Build
	if ok, _ := state.ReadJSON(m.VM.BuildRecord(), &b); ok && slices.Contains(b.Same, key) {
		return b.Key, nil
	}
	return key, nil
}

// maxSame bounds Build.Same.
const maxSame = 16

// fastKey hashes the inputs (guix.Key), after writing the files the wrapper
// names: devvm's authorized_keys and the wrapper itself, both in devvm's
// state, never in the checkout.
func (d *Driver) fastKey(m *machine.Machine) (string, error) {
	if err := d.writeAuthorizedKeys(m); err != nil {
		return "", err
	}
	if _, err := guix.WriteWrapper(m.VM.Dir(), d.contract(m)); err != nil {
		return "", fmt.Errorf("%s: %w", d.vf.Path, err)
	}
	key, _, err := guix.Key(d.inputs(m))
	if err != nil {
		return "", fmt.Errorf("hashing the build inputs: %w", err)
	}
	return key, nil
}

// Preflight implements machine.Driver: a busy pinned SSH port fails before
// anything is built.
func (d *Driver) Preflight(ctx context.Context, m *machine.Machine) error {
	if d.vf.SSHPortPinned {
		if _, err := qemu.PickSSHPort(d.vf.SSH.Port, true); err != nil {
			return d.vf.KeyError("ssh.port", "%v", err)
		}
	}
	return nil
}

// Build implements machine.Driver: guix runs only when the key or its GC
// root changed (or opts.Rebuild).
func (d *Driver) Build(ctx context.Context, m *machine.Machine, prev *machine.Build, opts backend.BuildOptions) (*machine.Build, error) {
	if err := d.vf.CheckFiles(); err != nil {
		return nil, err
	}
	in := d.inputs(m)
	if err := guix.CheckPinned(in.Channels); err != nil {
		return nil, err
	}
	key, err := d.currentKey(m)
	if err != nil {
		return nil, err
	}
	if prev != nil && !opts.Rebuild && prev.Key == key && d.valid(m, prev) == nil {
		return prev, nil
	}
	timeout := d.vf.Guix.BuildTimeout.D()
	if opts.Timeout > 0 {
		timeout = opts.Timeout
	}
	r := &guix.Runner{Env: d.env, Guix: d.guixCommand(), Progress: d.ui.Err, Terminal: d.ui.Terminal,
		Timeout: timeout, StallTimeout: 10 * time.Minute}
	req := guix.Request{Dir: d.vf.Dir, Config: in.Wrapper, ProjectConfig: in.Config, Channels: in.Channels,
		Root: m.VM.GCRoot(key), Persistent: d.vf.Persistent, Log: m.VM.BuildLog(), LoadPath: in.LoadPath,
		DisableAuthentication: d.vf.Guix.DisableAuthentication}
	if d.vf.Persistent {
		req.ImageSize = int64(d.vf.Disk.Bytes())
	}
	// The fast key changed: one evaluation tells whether the VM did, so an
	// edit that leaves the derivation as it was costs no build.
	d.ui.Debugf("$ %s", strings.Join(r.DerivationArgv(req), " "))
	drv, err := r.Derivation(ctx, req)
	if err != nil {
		return nil, err
	}
	if prev != nil && !opts.Rebuild && prev.Derivation == drv.RunVM && d.valid(m, prev) == nil {
		same := *prev
		same.Same = append(append([]string(nil), prev.Same...), key)
		if len(same.Same) > maxSame {
			same.Same = same.Same[len(same.Same)-maxSame:]
		}
		d.ui.Printf("the inputs changed but the VM's derivation did not: no rebuild")
		return &same, nil
	}
	d.ui.Printf("building the VM with guix (inputs changed or first build; log: %s)", m.VM.BuildLog())
	d.ui.Debugf("$ %s", strings.Join(r.Argv(req), " "))
	res, err := r.SystemVM(ctx, req)
	if err != nil {
		return nil, err
	}
	b := &machine.Build{Key: key, Derivation: drv.RunVM, Artifact: res.RunVM, Root: m.VM.GCRoot(key), Command: res.Argv,
		Persistent: d.vf.Persistent, BuiltAt: d.env.Now(), Seconds: res.Duration.Seconds(),
		Changed: prev == nil || prev.Artifact != res.RunVM}
	if err := d.valid(m, b); err != nil {
		return nil, fmt.Errorf("guix built %s, but devvm does not accept it: %v", res.RunVM, err)
	}
	d.ui.Printf("built %s in %.1fs", res.RunVM, res.Duration.Seconds())
	return b, nil
}

// valid checks that a build record names what devvm itself would boot: the
// GC root devvm registered for its key points at the recorded script, which
// is a run-vm.sh item directly in a store.
func (d *Driver) valid(m *machine.Machine, b *machine.Build) error {
	root := m.VM.GCRoot(b.Key)
	target, err := os.Readlink(root)
	if err != nil {
		return fmt.Errorf("its GC root %s is missing: %v", root, err)
	}
	if target != b.Artifact {
		return fmt.Errorf("its GC root %s points at %s, not at the recorded %s", root, target, b.Artifact)
	}
	if !qemu.IsStoreItem(b.Artifact, "-run-vm.sh") {
		return fmt.Errorf("%s is not a run-vm.sh item of a store", b.Artifact)
	}
	st, err := os.Lstat(b.Artifact)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", b.Artifact)
	}
	return nil
}

// Outdated implements machine.Driver.
func (d *Driver) Outdated(ctx context.Context, m *machine.Machine, rec *machine.Record) string {
	key, err := d.currentKey(m)
	switch {
	case err != nil:
		return ""
	case rec.BuildKey == "":
		return "devvm took it over from an older devvm and does not know its build"
	case key != rec.BuildKey:
		return "its build inputs changed since boot"
	}
	return ""
}

// Probe implements machine.Driver: QEMU's QMP socket (the VM's own path)
// must answer and the guest must run.
func (d *Driver) Probe(ctx context.Context, m *machine.Machine, rec *machine.Record) machine.Verdict {
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := qmp.Dial(qctx, m.VM.QMPSocket())
	if err != nil {
		return machine.Verdict{State: backend.Broken, Reason: "QEMU is alive but its QMP socket does not answer: " + err.Error()}
	}
	defer c.Close()
	st, err := c.QueryStatus(qctx)
	if err != nil {
		return machine.Verdict{State: backend.Broken, Reason: "QMP query-status failed: " + err.Error()}
	}
	if !st.Running {
		return machine.Verdict{State: backend.Broken, Reason: "QEMU is alive but the guest is " + st.Status}
	}
	return machine.Verdict{State: backend.Running}
}

// Stops implements machine.Driver: the ACPI power button. A Guix System
// built on %base-services ignores it (no elogind, no acpid), but other
// guests may not.
func (d *Driver) Stops(m *machine.Machine, rec *machine.Record) []machine.Stop {
	return []machine.Stop{{Name: "ACPI power button via QMP", Reserve: 3 * time.Second, Do: func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		c, err := qmp.Dial(ctx, m.VM.QMPSocket())
		if err != nil {
			return err
		}
		defer c.Close()
		return c.SystemPowerdown(ctx)
	}}}
}

// Clean implements machine.Driver: a Guix VM keeps nothing outside its
// state directories.
func (d *Driver) Clean(ctx context.Context, m *machine.Machine) error { return nil }

// Target implements machine.Driver.
func (d *Driver) Target(m *machine.Machine, rec *machine.Record) (*sshx.Target, error) {
	k, err := d.userKey()
	if err != nil {
		return nil, err
	}
	return &sshx.Target{
		Addr: fmt.Sprintf("127.0.0.1:%d", rec.SSHPort), User: d.vf.SSH.User, Key: k,
		KnownHosts: m.VM.KnownHosts(), HostKeyAlias: sshx.HostAlias(m.Name),
		AgentForward: d.vf.SSH.ForwardAgent, HandshakeTimeout: 10 * time.Second,
		Ciphers: rec.Ciphers(),
	}, nil
}

// SSHConfig implements machine.Driver.
func (d *Driver) SSHConfig(m *machine.Machine, rec *machine.Record) (string, error) {
	k, err := d.userKey()
	if err != nil {
		return "", err
	}
	return sshx.SSHConfig(sshx.ConfigOptions{
		Host: sshx.HostAlias(m.Name), HostName: "127.0.0.1", Port: fmt.Sprint(rec.SSHPort), User: d.vf.SSH.User,
		IdentityFile: k.PrivatePath, KnownHosts: m.VM.KnownHosts(), HostKeyAlias: sshx.HostAlias(m.Name),
		ForwardAgent: d.vf.SSH.ForwardAgent, Ciphers: rec.Ciphers(),
	})
}
