// Package engine implements backend.Backend for Guix System VMs run by
// local QEMU (build with guix, launch QEMU detached, wait for SSH, halt by
// escalation, destroy and collect garbage), and picks the backend a
// Vmfile asks for.
package engine

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
	"github.com/devvm/devvm/launcher/sshx"
	"github.com/devvm/devvm/launcher/state"
	"github.com/devvm/devvm/launcher/vmfile"
)

// UI is where commands report progress.
type UI = backend.UI

// Guix is the backend of Guix System VMs.
type Guix struct {
	VF  *vmfile.Vmfile
	Env *hostenv.Env
	UI  *UI
	VM  *state.VM
}

var _ backend.Backend = (*Guix)(nil)

// NewGuix returns the Guix backend for a Vmfile.
func NewGuix(vf *vmfile.Vmfile, env *hostenv.Env, ui *UI) *Guix {
	return &Guix{VF: vf, Env: env, UI: ui, VM: state.New(vf.Dir, vf.Name, env.RuntimeDir)}
}

// Kind implements backend.Backend.
func (g *Guix) Kind() string { return vmfile.BackendGuix }

// Machines implements backend.Backend.
func (g *Guix) Machines() []string { return []string{g.VF.Name} }

func (g *Guix) checkNames(names []string) error {
	for _, n := range names {
		if n != g.VF.Name {
			return fmt.Errorf("no machine %q in %s: this Vmfile defines %q", n, g.VF.Path, g.VF.Name)
		}
	}
	return nil
}

// BuildRecord is .devvm/<vm>/build.json.
type BuildRecord struct {
	Key string `json:"key"`
	// Drv is the VM's derivation: a changed key whose derivation is still
	// Drv needs no build.
	Drv string `json:"drv,omitempty"`
	// Same are later keys whose inputs `guix system vm -d` showed to give
	// Drv: they stand for Key (its GC root, disk and runtime record).
	Same       []string  `json:"same_keys,omitempty"`
	RunVM      string    `json:"run_vm"`
	Root       string    `json:"gc_root"`
	Guix       []string  `json:"guix"`
	Persistent bool      `json:"persistent"`
	BuiltAt    time.Time `json:"built_at"`
	Seconds    float64   `json:"seconds"`
}

func (g *Guix) guixCommand() string {
	if g.VF.Guix.Command != "" {
		return g.VF.Guix.Command
	}
	return "guix"
}

// userKey returns devvm's user key, creating it on first need.
func (g *Guix) userKey() (*sshx.Key, error) { return sshx.EnsureUserKey(g.Env.DataDir) }

// writeAuthorizedKeys writes .devvm/authorized_keys, which the guest config
// loads with local-file: devvm's key plus the Vmfile's ssh.authorized_keys.
// It is rewritten only when its content changes.
func (g *Guix) writeAuthorizedKeys() error {
	k, err := g.userKey()
	if err != nil {
		return err
	}
	var b bytes.Buffer
	b.Write(bytes.TrimSpace(k.AuthorizedLine))
	b.WriteByte('\n')
	for i, ak := range g.VF.SSH.AuthorizedKeys {
		line := ak
		if !strings.HasPrefix(strings.TrimSpace(ak), "ssh-") && !strings.HasPrefix(strings.TrimSpace(ak), "ecdsa-") {
			data, err := os.ReadFile(g.VF.Resolve(ak))
			if err != nil {
				return fmt.Errorf("%s: ssh.authorized_keys[%d]: %v (give a public key file or a literal \"ssh-ed25519 AAAA…\" line)", g.VF.Path, i, err)
			}
			line = string(data)
		}
		b.WriteString(strings.TrimSpace(line) + "\n")
	}
	path := g.VM.AuthorizedKeys()
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b.Bytes()) {
		return nil
	}
	if err := os.MkdirAll(g.VM.Root(), 0o755); err != nil {
		return err
	}
	return state.WriteFileAtomic(path, b.Bytes(), 0o644)
}

// contract is what the wrapper adds to the project's config, from the Vmfile.
func (g *Guix) contract() guix.Contract {
	c := guix.Contract{ProjectConfig: g.VF.Resolve(g.VF.Guix.Config), User: g.VF.SSH.User, UID: guestUID(g.VF.Dir),
		AuthorizedKeysFile: g.VM.AuthorizedKeys()}
	if g.VF.Guix.Manifest != "" {
		c.Packages = g.VF.Resolve(g.VF.Guix.Manifest)
	}
	for _, s := range g.VF.Shares {
		if s.Mode == vmfile.ShareSSH {
			continue // mounted by devvm over SSH, not by the guest's config
		}
		c.Shares = append(c.Shares, guix.Share{Tag: s.Tag, Guest: s.Guest, ReadOnly: s.ReadOnly})
	}
	return c
}

// wrapperDir is where the generated wrapper lives: devvm's state, never a
// file of the project.
func (g *Guix) wrapperDir() string { return g.VM.Dir() }

func (g *Guix) inputs() guix.Inputs {
	var shares []string
	for _, s := range g.VF.Shares {
		shares = append(shares, fmt.Sprintf("%s:%s:%v:%s", s.Tag, s.Guest, s.ReadOnly, s.Mode))
	}
	in := guix.Inputs{
		Config:   g.VF.Resolve(g.VF.Guix.Config),
		Channels: g.VF.Resolve(g.VF.Guix.Channels),
		Wrapper:  filepath.Join(g.wrapperDir(), guix.WrapperName),
		Settings: map[string]string{
			"name":       g.VF.Name,
			"ssh.user":   g.VF.SSH.User,
			"shares":     strings.Join(shares, " "),
			"persistent": fmt.Sprint(g.VF.Persistent),
		},
	}
	if g.VF.Guix.Manifest != "" {
		in.Manifest = g.VF.Resolve(g.VF.Guix.Manifest)
	}
	return in
}

// CurrentKey computes the build key of the inputs as they are now: the
// recorded build's key when these inputs were shown to give its derivation.
func (g *Guix) CurrentKey() (string, error) {
	key, err := g.fastKey()
	if err != nil {
		return "", err
	}
	var rec BuildRecord
	if ok, _ := state.ReadJSON(g.VM.BuildRecord(), &rec); ok && slices.Contains(rec.Same, key) {
		return rec.Key, nil
	}
	return key, nil
}

// maxSame bounds BuildRecord.Same.
const maxSame = 16

// fastKey hashes the inputs (guix.Key), after writing the files the
// wrapper names.
func (g *Guix) fastKey() (string, error) {
	if err := g.writeAuthorizedKeys(); err != nil {
		return "", err
	}
	if _, err := guix.WriteWrapper(g.wrapperDir(), g.contract()); err != nil {
		return "", fmt.Errorf("%s: %w", g.VF.Path, err)
	}
	key, _, err := guix.Key(g.inputs())
	if err != nil {
		return "", fmt.Errorf("hashing the build inputs: %w", err)
	}
	return key, nil
}

// Build implements backend.Backend.
func (g *Guix) Build(ctx context.Context, opts backend.BuildOptions) error {
	lk, err := g.VM.Lock("devvm build")
	if err != nil {
		return err
	}
	defer lk.Unlock()
	_, err = g.build(ctx, opts)
	return err
}

// build returns the build record, running guix only when the key or its
// GC root changed (or opts.Rebuild).
func (g *Guix) build(ctx context.Context, opts backend.BuildOptions) (*BuildRecord, error) {
	if err := g.VM.Ensure(); err != nil {
		return nil, err
	}
	if err := g.VF.CheckFiles(); err != nil {
		return nil, err
	}
	in := g.inputs()
	if err := guix.CheckPinned(in.Channels); err != nil {
		return nil, err
	}
	key, err := g.CurrentKey()
	if err != nil {
		return nil, err
	}
	var rec BuildRecord
	ok, err := state.ReadJSON(g.VM.BuildRecord(), &rec)
	if err != nil {
		return nil, err
	}
	if ok && !opts.Rebuild && rec.Key == key && rootValid(rec) {
		return &rec, nil
	}
	timeout := g.VF.Guix.BuildTimeout.D()
	if opts.Timeout > 0 {
		timeout = opts.Timeout
	}
	r := &guix.Runner{Env: g.Env, Guix: g.guixCommand(), Progress: g.UI.Err, Terminal: g.UI.Terminal,
		Timeout: timeout, StallTimeout: 10 * time.Minute}
	req := guix.Request{Dir: g.VF.Dir, Config: in.Wrapper, ProjectConfig: in.Config, Channels: in.Channels,
		Root: g.VM.GCRoot(key), Persistent: g.VF.Persistent, Log: g.VM.BuildLog()}
	// The fast key changed: one evaluation tells whether the VM did.
	drv, err := r.Derivation(ctx, req)
	if err != nil {
		return nil, err
	}
	if ok && !opts.Rebuild && rec.Drv == drv.RunVM && rootValid(rec) {
		rec.Same = append(rec.Same, key)
		if len(rec.Same) > maxSame {
			rec.Same = rec.Same[len(rec.Same)-maxSame:]
		}
		if err := state.WriteJSON(g.VM.BuildRecord(), rec); err != nil {
			return nil, err
		}
		g.UI.Printf("inputs changed but the VM's derivation did not: no rebuild")
		return &rec, nil
	}
	g.UI.Printf("building the VM with guix (inputs changed or first build; log: %s)", g.VM.BuildLog())
	res, err := r.SystemVM(ctx, req)
	if err != nil {
		return nil, err
	}
	rec = BuildRecord{Key: key, Drv: drv.RunVM, RunVM: res.RunVM, Root: g.VM.GCRoot(key), Guix: res.Argv,
		Persistent: g.VF.Persistent, BuiltAt: g.Env.Now(), Seconds: res.Duration.Seconds()}
	if err := state.WriteJSON(g.VM.BuildRecord(), rec); err != nil {
		return nil, err
	}
	g.UI.Printf("built %s in %.1fs", res.RunVM, res.Duration.Seconds())
	return &rec, nil
}

// rootValid: the GC root still points at the recorded script, which exists.
func rootValid(rec BuildRecord) bool {
	target, err := os.Readlink(rec.Root)
	if err != nil || target != rec.RunVM {
		return false
	}
	_, err = os.Stat(rec.RunVM)
	return err == nil
}
