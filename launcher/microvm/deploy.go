package microvm

import (
	"context"
	"fmt"
	"github.com/devvm/devvm/launcher/machine"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/devvm/devvm/launcher/sshx"
)

// How `devvm up` deploys one VM on a hypervisor, decided from what
// microvm.nix itself reads in /var/lib/microvms/NAME (pkgs/microvm-command.nix:
// `-c` refuses an existing directory, L117-120; `-u` refuses a `toplevel`,
// L80-83, and builds from the reference in `flake`, L85-87; the host module
// writes `flake` and `toplevel`, nixos-modules/host/default.nix L111-145).
type deployKind int

const (
	// deployCreate: no directory: `microvm -c NAME -f FLAKE`.
	deployCreate deployKind = iota
	// deployCreateOverEmpty: an empty directory (systemd-tmpfiles made it,
	// or the host's install-microvm-NAME was skipped by its
	// ConditionPathExists=!DIR): rmdir it, then `microvm -c`.
	deployCreateOverEmpty
	// deployAdopt: a directory with files but no `flake` (share sources
	// made by tmpfiles, a runner installed by deploy.installOnHost): record
	// the flake there, `microvm -u`, and the GC roots `microvm -c` makes.
	deployAdopt
	// deployUpdate: `flake` names devvm's checkout: `microvm -u NAME`.
	deployUpdate
	// deployRepoint: `flake` names another flake (microvm.vms.NAME.updateFlake,
	// an earlier `microvm -c -f`): devvm points it at its checkout, then `microvm -u`.
	deployRepoint
	// deploySwitch: the host's configuration installs the VM on every
	// switch (a `toplevel`, or a `flake` holding a store copy: flake without
	// updateFlake): `nixos-rebuild switch --flake FLAKE#HOST`.
	deploySwitch
)

// deployPlan is what devvm will do for one VM and why.
type deployPlan struct {
	Kind deployKind
	// Why is said to the user before anything runs ("" for the plain cases).
	Why string
}

// planDeploy decides how to deploy a VM. dir is its state directory on the
// hypervisor, ours the flake reference devvm deploys (the checkout there).
func planDeploy(in vmInfo, dir, ours string) deployPlan {
	switch {
	case in.Toplevel != "":
		return deployPlan{deploySwitch, fmt.Sprintf("%s/toplevel exists: the VM is fully declarative (microvm.vms.%s.config in the hypervisor's configuration), which `microvm -u` refuses to update; devvm switches the hypervisor to the new configuration", dir, in.Name)}
	case !in.Exists:
		return deployPlan{Kind: deployCreate}
	case in.HasFlake:
		p := flakePath(in.Flake, dir)
		switch {
		case p == path.Clean(ours):
			return deployPlan{Kind: deployUpdate}
		case isStorePath(p):
			return deployPlan{deploySwitch, fmt.Sprintf("%s/flake holds the store copy %s (microvm.vms.%s.flake without updateFlake): `microvm -u` would rebuild that copy, not your changes, and the hypervisor reinstalls the VM from its own configuration at every switch; devvm switches the hypervisor", dir, in.Flake, in.Name)}
		}
		what := "it is not a path Nix reads as that directory"
		if p != "" {
			what = "that is " + p
		}
		return deployPlan{deployRepoint, fmt.Sprintf("%s/flake names %q (written by microvm.vms.%s.updateFlake, or an earlier `microvm -c -f`), and `microvm -u` builds from it, not from devvm's checkout %s (%s): devvm points it at the checkout so that what you pushed is what gets built; set updateFlake = %q in the hypervisor's configuration to make that permanent", dir, in.Flake, in.Name, ours, what, "git+file://"+ours)}
	case in.Entries == "" && in.Current == "":
		return deployPlan{deployCreateOverEmpty, fmt.Sprintf("%s exists but is empty (made by systemd-tmpfiles, or the host's install-microvm-%s was skipped because the directory existed): `microvm -c` refuses an existing directory and `microvm -u` needs its flake file, so devvm removes the empty directory and creates the VM", dir, in.Name)}
	default:
		return deployPlan{deployAdopt, fmt.Sprintf("%s exists without a flake file (it holds: %s): devvm records the flake there and builds it with `microvm -u`, with the GC roots `microvm -c` would make", dir, in.Entries)}
	}
}

// flakePath is the directory a flake reference names, resolved like
// `microvm -u` does (nix build runs in the VM's directory, L138 and L87), or
// "" when it names no directory (github:…, an indirect registry name such as
// "root/infra", which Nix reads as flake:root/infra).
func flakePath(ref, dir string) string {
	r := ref
	if i := strings.IndexAny(r, "?#"); i >= 0 {
		r = r[:i]
	}
	for _, scheme := range []string{"git+file://", "file://", "path:"} {
		if s, ok := strings.CutPrefix(r, scheme); ok {
			r = s
			break
		}
	}
	switch {
	case strings.Contains(r, ":"):
		return ""
	case strings.HasPrefix(r, "/"):
		return path.Clean(r)
	case r == "." || r == ".." || strings.HasPrefix(r, "./") || strings.HasPrefix(r, "../"):
		return path.Join(dir, r)
	}
	return ""
}

var storeItemRe = regexp.MustCompile(`^[0-9abcdfghijklmnpqrsvwxyz]{32}-`)

// isStorePath is a path directly in a Nix store (…/store/HASH-NAME).
func isStorePath(p string) bool {
	return p != "" && path.Base(path.Dir(p)) == "store" && storeItemRe.MatchString(path.Base(p))
}

// declaredByHost is a VM the hypervisor's own configuration installs.
func declaredByHost(in vmInfo, dir string) bool {
	return in.Toplevel != "" || (in.HasFlake && isStorePath(flakePath(in.Flake, dir)))
}

// deployer deploys the VMs of one `devvm up`.
type deployer struct {
	r     *remote
	flake string
	// configs are the flake's nixosConfigurations names on the hypervisor.
	configs []string
	host    string // the hypervisor's host name, once asked
}

// newDeployer checks that the flake on the hypervisor defines every machine
// of names (after the sync), with one `nix eval` that evaluates no
// configuration; a fully declarative VM (installed with a toplevel, see
// before) has no nixosConfigurations entry of its own.
func (r *remote) newDeployer(ctx context.Context, flake string, names []string, before map[string]vmInfo) (*deployer, error) {
	out, err := r.exec(ctx, "nix "+sshx.ShellQuote(listConfigsArgs(flake)), nil, false)
	if err != nil {
		return nil, fmt.Errorf("%w\nhint: the flake at %s on the hypervisor does not evaluate; `devvm doctor` checks Nix there", err, flake)
	}
	configs, err := parseConfigs(out)
	if err != nil {
		return nil, err
	}
	var own []string
	for _, n := range names {
		if before[n].Toplevel == "" {
			own = append(own, n)
		}
	}
	if err := checkMachines(r.vf, own, configs, flake+" on the hypervisor"); err != nil {
		return nil, err
	}
	return &deployer{r: r, flake: flake, configs: configs}, nil
}

// deploy builds (and creates) one VM; keepOld says whether devvm keeps the
// replaced runner as `old` for rollback (not for a host switch: the host's
// previous generation is the rollback there).
func (d *deployer) deploy(ctx context.Context, name string, in vmInfo) (keepOld bool, err error) {
	r, hv, dir := d.r, d.r.hvName(name), d.r.vmDir(name)
	p := planDeploy(in, dir, d.flake)
	if p.Why != "" {
		r.ui.Printf("VM %q: %s", name, p.Why)
	}
	create := "microvm -c " + shq(hv) + " -f " + shq(d.flake)
	record := "printf '%s' " + shq(d.flake) + " > " + shq(dir+"/flake")
	var cmd string
	switch p.Kind {
	case deployCreate:
		cmd = create
	case deployCreateOverEmpty:
		cmd = "rmdir " + shq(dir) + " && " + create
	case deployAdopt:
		cmd = record + " && microvm -u " + shq(hv) + " && ln -sfn " + shq(dir+"/current") + " " + shq(path.Join(r.gcRoots, hv)) +
			" && ln -sfn " + shq(dir+"/booted") + " " + shq(path.Join(r.gcRoots, "booted-"+hv))
	case deployUpdate:
		cmd = "microvm -u " + shq(hv)
	case deployRepoint:
		cmd = record + " && microvm -u " + shq(hv)
	case deploySwitch:
		host, err := d.hostConfig(ctx)
		if err != nil {
			return false, err
		}
		cmd = "nixos-rebuild switch --flake " + shq(d.flake+"#"+host)
	}
	if _, err := r.exec(ctx, cmd, nil, true); err != nil {
		if p.Kind == deployCreate || p.Kind == deployCreateOverEmpty {
			return false, fmt.Errorf("%w\nhint: check that the flake at %s on the hypervisor defines nixosConfigurations.%s", err, d.flake, hv)
		}
		return false, err
	}
	return p.Kind != deploySwitch, nil
}

// hostConfig is the hypervisor's nixosConfigurations name: its host name,
// which is what nixos-rebuild picks by default; it must be in the flake.
func (d *deployer) hostConfig(ctx context.Context) (string, error) {
	if d.host != "" {
		return d.host, nil
	}
	out, err := d.r.exec(ctx, "hostname", nil, false)
	if err != nil {
		return "", err
	}
	h := strings.TrimSpace(out)
	if !slices.Contains(d.configs, h) {
		return "", fmt.Errorf("the hypervisor's host name is %q, but the flake %s has no nixosConfigurations.%s (it has %s): nixos-rebuild switch --flake cannot deploy its declarative VMs; name the hypervisor's configuration after its host name", h, d.flake, h, strings.Join(d.configs, ", "))
	}
	d.host = h
	return h, nil
}

// rollbackHost rolls the hypervisor back to its previous NixOS generation
// when one of names is installed by the hypervisor's configuration (see
// declaredByHost): that is the rollback of a host switch. It returns the
// other names, whose runners devvm rolls back itself.
func (r *remote) rollbackHost(ctx context.Context, names []string, infos map[string]vmInfo) ([]string, error) {
	var host, rest []string
	for _, n := range names {
		if declaredByHost(infos[n], r.vmDir(n)) {
			host = append(host, n)
		} else {
			rest = append(rest, n)
		}
	}
	if len(host) == 0 {
		return rest, nil
	}
	r.ui.Printf("%s installed by the hypervisor's own configuration: devvm switches the hypervisor back to its previous generation, which rolls back the host and every VM it declares", machine.List(host))
	if _, err := r.exec(ctx, "nixos-rebuild switch --rollback", nil, true); err != nil {
		return nil, err
	}
	return rest, nil
}
