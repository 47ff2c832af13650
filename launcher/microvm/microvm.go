// Package microvm holds the machine.Drivers of microvm.nix VMs: on this
// machine (nix build of the declared runner, bin/microvm-run detached) or
// on a remote NixOS hypervisor driven over one SSH connection with the real
// `microvm`, `systemctl`, `journalctl` and `nix` commands, each printed so a
// user can run it by hand. The lifecycle around them is launcher/machine's.
package microvm

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/machine"
	"github.com/devvm/devvm/launcher/sshx"
	"github.com/devvm/devvm/launcher/vmfile"
)

// New returns the driver of a Vmfile with backend = "microvm": the remote
// one when the Vmfile has a [microvm.remote] table, else the local one.
func New(vf *vmfile.Vmfile, env *hostenv.Env, ui *backend.UI) (machine.Driver, error) {
	if vf.MicroVM == nil || len(vf.MicroVM.Machines) == 0 {
		return nil, fmt.Errorf("%s: backend \"microvm\" needs at least one [microvm.machines.NAME] table", vf.Path)
	}
	c := &common{vf: vf, env: env, ui: ui}
	for n := range vf.MicroVM.Machines {
		c.names = append(c.names, n)
	}
	sort.Strings(c.names)
	if vf.MicroVM.Remote != nil {
		return newRemote(c)
	}
	return &local{c}, nil
}

// common is shared by both drivers.
type common struct {
	vf    *vmfile.Vmfile
	env   *hostenv.Env
	ui    *backend.UI
	names []string
}

// Kind implements machine.Driver.
func (c *common) Kind() string { return vmfile.BackendMicroVM }

// Machines implements machine.Driver.
func (c *common) Machines() []string { return slices.Clone(c.names) }

func (c *common) machine(name string) vmfile.Machine { return c.vf.MicroVM.Machines[name] }

// machineKeys are the keys the Vmfile names for a machine (identity_file),
// offered besides devvm's key and the agent's.
func (c *common) machineKeys(name string) ([]*sshx.Key, error) {
	f := c.machine(name).IdentityFile
	if f == "" {
		return nil, nil
	}
	k, err := sshx.LoadKey(c.vf.Resolve(f))
	if err != nil {
		return nil, fmt.Errorf("%s: microvm.machines.%s.identity_file: %v", c.vf.Path, name, err)
	}
	return []*sshx.Key{k}, nil
}

// userKey is devvm's own SSH key.
func (c *common) userKey() (*sshx.Key, error) { return sshx.EnsureUserKey(c.env.DataDir) }

// flakeRel is the flake directory relative to the checkout ("." for the root).
func (c *common) flakeRel() (string, error) {
	abs := c.vf.Resolve(c.vf.MicroVM.Flake)
	rel, err := filepath.Rel(c.vf.Dir, abs)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("%s: microvm.flake = %q is outside the checkout %s; put the flake in the checkout", c.vf.Path, c.vf.MicroVM.Flake, c.vf.Dir)
	}
	return rel, nil
}
