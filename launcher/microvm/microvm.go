// Package microvm implements backend.Backend for microvm.nix VMs, on this
// machine (nix build of the declared runner, bin/microvm-run detached) or on
// a remote NixOS hypervisor driven over one SSH connection with the real
// `microvm`, `systemctl`, `journalctl` and `nix` commands, each printed so a
// user can run it by hand.
package microvm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/sshx"
	"github.com/devvm/devvm/launcher/state"
	"github.com/devvm/devvm/launcher/vmfile"
)

// impl is what the local and the remote implementation provide.
type impl interface {
	backend.Backend
	// Rollback points each VM's runner back at the previous one and restarts it.
	Rollback(ctx context.Context, names []string) error
	// Restart restarts each VM and waits for its SSH.
	Restart(ctx context.Context, names []string) error
	// Run runs a VM in the foreground (`microvm -r NAME`) on this terminal.
	Run(ctx context.Context, name string) error
	// Close ends the connection to the hypervisor, if any.
	Close() error
}

// Backend is the microvm.nix backend: the remote implementation when the
// Vmfile has a [microvm.remote] table, else the local one.
type Backend struct{ impl }

var _ backend.Backend = (*Backend)(nil)

// New returns the backend of a Vmfile with backend = "microvm".
func New(vf *vmfile.Vmfile, env *hostenv.Env, ui *backend.UI) (*Backend, error) {
	if vf.MicroVM == nil || len(vf.MicroVM.Machines) == 0 {
		return nil, fmt.Errorf("%s: backend \"microvm\" needs at least one [microvm.machines.NAME] table", vf.Path)
	}
	c := &common{vf: vf, env: env, ui: ui}
	for n := range vf.MicroVM.Machines {
		c.names = append(c.names, n)
	}
	sort.Strings(c.names)
	if vf.MicroVM.Remote != nil {
		r, err := newRemote(c)
		if err != nil {
			return nil, err
		}
		return &Backend{r}, nil
	}
	return &Backend{newLocal(c)}, nil
}

// common is shared by both implementations.
type common struct {
	vf    *vmfile.Vmfile
	env   *hostenv.Env
	ui    *backend.UI
	names []string
}

// Kind implements backend.Backend.
func (c *common) Kind() string { return vmfile.BackendMicroVM }

// Machines implements backend.Backend.
func (c *common) Machines() []string { return slices.Clone(c.names) }

// pick returns the machines to act on: names, or all when empty; unknown
// names are refused before anything runs.
func (c *common) pick(names []string) ([]string, error) {
	if len(names) == 0 {
		return c.Machines(), nil
	}
	var out []string
	for _, n := range names {
		if _, ok := c.vf.MicroVM.Machines[n]; !ok {
			return nil, fmt.Errorf("no machine %q in %s: this Vmfile defines %s", n, c.vf.Path, strings.Join(c.names, ", "))
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

func (c *common) machine(name string) vmfile.Machine { return c.vf.MicroVM.Machines[name] }

// vm is the local state of a machine (.devvm/<name>/).
func (c *common) vm(name string) *state.VM { return state.New(c.vf.Dir, name, c.env.RuntimeDir) }

// alias is the name the guest's host key is pinned under.
func alias(name string) string { return "devvm-" + name }

// userKey is devvm's own SSH key.
func (c *common) userKey() (*sshx.Key, error) { return sshx.EnsureUserKey(c.env.DataDir) }

// lock takes the command lock of every machine, or none.
func (c *common) lock(names []string, what string) (func(), error) {
	var held []*state.Lock
	unlock := func() {
		for _, l := range held {
			l.Unlock()
		}
	}
	for _, n := range names {
		l, err := c.vm(n).Lock(what)
		if err != nil {
			unlock()
			return nil, err
		}
		held = append(held, l)
	}
	return unlock, nil
}

// flakeRel is the flake directory relative to the checkout ("." for the root).
func (c *common) flakeRel() (string, error) {
	abs := c.vf.Resolve(c.vf.MicroVM.Flake)
	rel, err := filepath.Rel(c.vf.Dir, abs)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("%s: microvm.flake = %q is outside the checkout %s; put the flake in the checkout", c.vf.Path, c.vf.MicroVM.Flake, c.vf.Dir)
	}
	return rel, nil
}

// confirm asks a yes/no question on the terminal.
func (c *common) confirm(q string) bool {
	fmt.Fprintf(c.ui.Err, "%s [y/N] ", q)
	var b [64]byte
	n, _ := c.ui.In.Read(b[:])
	a := strings.ToLower(strings.TrimSpace(string(b[:n])))
	return a == "y" || a == "yes"
}

// forgetLocal removes what devvm keeps in the checkout for a machine.
func (c *common) forgetLocal(name string) error {
	v := c.vm(name)
	if err := os.RemoveAll(v.Dir()); err != nil {
		return fmt.Errorf("removing %s: %w", v.Dir(), err)
	}
	os.RemoveAll(v.RuntimeDir())
	if err := state.OpenRegistry(c.env.StateDir).Remove(v.ID()); err != nil {
		c.ui.Printf("warning: could not update the VM registry: %v", err)
	}
	if ents, err := os.ReadDir(v.Root()); err == nil {
		for _, e := range ents {
			if e.IsDir() {
				return nil
			}
		}
		os.RemoveAll(v.Root())
	}
	return nil
}

// register records a machine in the user-wide registry (devvm list).
func (c *common) register(name string) {
	v := c.vm(name)
	if err := state.OpenRegistry(c.env.StateDir).Add(state.Entry{ID: v.ID(), Name: name, Backend: c.Kind(),
		Checkout: c.vf.Dir, Added: c.env.Now()}); err != nil {
		c.ui.Printf("warning: could not update the VM registry: %v", err)
	}
}
