package microvm

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"strings"
)

// localFactsExpr reads from a guest's config what a run on this machine
// needs, before its runner is built (`nix eval --json
// FLAKE#nixosConfigurations.NAME.config --apply`).
const localFactsExpr = `cfg: {
  hypervisor = cfg.microvm.hypervisor or "";
  system = cfg.nixpkgs.hostPlatform.system or "";
  interfaces = map (i: i.type or "") (cfg.microvm.interfaces or []);
  forwardPorts = map (f: {
    from = f.from or "host"; proto = f.proto or "tcp";
    host = { address = f.host.address or ""; port = f.host.port or 0; };
    guest = { address = f.guest.address or ""; port = f.guest.port or 0; };
  }) (cfg.microvm.forwardPorts or []);
}`

// localFacts is the answer of localFactsExpr.
type localFacts struct {
	Hypervisor   string        `json:"hypervisor"`
	System       string        `json:"system"`
	Interfaces   []string      `json:"interfaces"`
	ForwardPorts []ForwardPort `json:"forwardPorts"`
}

// hostSystem is this machine's Nix system name (x86_64-linux, aarch64-darwin…).
func hostSystem() string {
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64", "386": "i686", "riscv64": "riscv64"}[runtime.GOARCH]
	if arch == "" {
		arch = runtime.GOARCH
	}
	return arch + "-" + runtime.GOOS
}

// checkLocal says why a VM cannot run here as configured, before a build:
// devvm reaches a local VM through qemu's user-network forward of the port
// the Vmfile gives (the host port), and runs its runner on this machine.
// It returns the forward's bind address and host port.
func checkLocal(name string, f localFacts, system string, port int) (string, int, error) {
	if f.Hypervisor != "qemu" {
		return "", 0, fmt.Errorf("VM %q: microvm.hypervisor is %q, but devvm reaches a VM on this machine through microvm.forwardPorts, which microvm.nix supports only with qemu (nixos-modules/microvm/asserts.nix): set microvm.hypervisor = \"qemu\", or run it on a hypervisor ([microvm.remote])", name, f.Hypervisor)
	}
	if !slices.Contains(f.Interfaces, "user") {
		return "", 0, fmt.Errorf("VM %q has no type = \"user\" interface (it has %s), so qemu forwards no port to it: add microvm.interfaces = [{ type = \"user\"; id = \"qemu\"; mac = \"02:00:00:00:00:01\"; }]", name, orNone(f.Interfaces))
	}
	if f.System != "" && f.System != system {
		return "", 0, fmt.Errorf("VM %q is built for %s (nixpkgs.hostPlatform), this machine is %s: its runner would be a %s program (a cross build first, then it cannot run here); run it on a %s hypervisor ([microvm.remote]) or give the local VM nixpkgs.hostPlatform = %q", name, f.System, system, f.System, f.System, system)
	}
	b, _ := json.Marshal(f.ForwardPorts)
	bind, p, err := hostForward(b, port)
	if err != nil {
		return "", 0, fmt.Errorf("VM %q: %w", name, err)
	}
	return bind, p, nil
}

func orNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

// precheck evaluates what checkLocal needs (one nix eval, nothing built);
// a machine the flake lacks is named with the machines it has.
func (l *local) precheck(ctx context.Context, name string) (string, int, error) {
	f, err := l.flake()
	if err != nil {
		return "", 0, err
	}
	out, err := l.nix(ctx, "eval", "--json", f+"#nixosConfigurations."+l.machine(name).Config+".config", "--apply", localFactsExpr)
	if err != nil {
		if names, lerr := l.nix(ctx, listConfigsArgs(f)[len(NixFlags):]...); lerr == nil {
			if configs, perr := parseConfigs(names); perr == nil {
				if cerr := checkMachines(l.vf, []string{name}, configs, f); cerr != nil {
					return "", 0, cerr
				}
			}
		}
		return "", 0, err
	}
	var facts localFacts
	if err := json.Unmarshal([]byte(out), &facts); err != nil {
		return "", 0, fmt.Errorf("unexpected answer from nix eval about VM %q (%v): %.200s", name, err, out)
	}
	return checkLocal(name, facts, hostSystem(), l.machine(name).Port)
}
