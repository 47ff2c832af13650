package project

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/microvm"
	"github.com/devvm/devvm/launcher/state"
	"github.com/devvm/devvm/launcher/vmfile"
)

// MicroVMOptions for InitMicroVM.
type MicroVMOptions struct {
	Dir    string         // the checkout, with a flake.nix
	Name   string         // the Vmfile's name (default: the directory's)
	Remote *vmfile.Remote // the hypervisor, or nil for VMs run here
	Force  bool           // overwrite an existing Vmfile
}

// HasFlake tells whether a checkout has a flake.nix at its root.
func HasFlake(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "flake.nix"))
	return err == nil
}

// InitMicroVM writes the Vmfile of a flake checkout from the microvm.nix
// machines its flake declares (`nix eval`, nothing built): their names,
// configs, users and addresses as the flake has them, so they never have to
// be copied by hand. It fails when the flake declares none.
func InitMicroVM(ctx context.Context, env *hostenv.Env, ui *backend.UI, o MicroVMOptions) error {
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, vmfile.FileName)
	if _, err := os.Stat(path); err == nil && !o.Force {
		ui.Printf("kept %s (exists; --force overwrites it)", vmfile.FileName)
		return nil
	}
	ui.Printf("listing the microvm.nix machines of %s (nix eval; nothing is built)", filepath.Join(dir, "flake.nix"))
	d, err := microvm.DiscoverMachines(ctx, env, dir)
	if err != nil {
		return err
	}
	if len(d.Machines) == 0 {
		return fmt.Errorf("the flake in %s declares no microvm.nix machine (no nixosConfigurations entry imports the microvm module, and no host declares microvm.vms): `devvm init --backend guix` writes a Guix VM instead", dir)
	}
	name := o.Name
	if name == "" {
		name = vmfile.SanitizeName(filepath.Base(dir))
	}
	text := microvm.RenderVmfile(d.Machines, microvm.RenderOptions{Name: name, Remote: o.Remote})
	if _, err := vmfile.Parse(path, text); err != nil {
		return fmt.Errorf("the Vmfile devvm would write for these machines does not load (%v); this is a devvm bug: please report it with your flake's nixosConfigurations", err)
	}
	if err := state.WriteFileAtomic(path, text, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	ui.Printf("wrote %s for the machines %s", vmfile.FileName, strings.Join(d.Names(), ", "))
	ui.Printf("next: `devvm doctor` checks this host, `devvm up` deploys the machines")
	return nil
}
