package microvm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/sshx"
	"github.com/devvm/devvm/launcher/vmfile"
)

// Check is one line of `devvm doctor`.
type Check = backend.Check

// flakesProbe is true exactly when the evaluator has flakes (builtins.getFlake).
const flakesProbe = "builtins ? getFlake"

// DoctorChecks checks what the microvm backend needs: Nix with flakes here,
// the flake and its machines, and either KVM here (local) or the
// hypervisor: reachable, its host key known, a login, the checkout, the
// `microvm` command, Nix with flakes enabled for it, and /dev/kvm there.
func DoctorChecks(ctx context.Context, env *hostenv.Env, vf *vmfile.Vmfile) []Check {
	var out []Check
	add := func(c Check) { out = append(out, c) }
	run := func(args ...string) (string, error) {
		cmd := env.Command(ctx, "nix", args...)
		cmd.Dir = vf.Dir
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("%v: %s", err, strings.TrimSpace(tail(e.String(), 3)))
		}
		return strings.TrimSpace(o.String()), nil
	}
	ver, err := run("--version")
	if err != nil {
		add(Check{Name: "nix", Required: true, Detail: "nix does not run: " + err.Error(), Fix: "install Nix (https://nixos.org/download) and put it in PATH"})
		return append(out, hostChecks(ctx, env, vf)...)
	}
	add(Check{Name: "nix", OK: true, Required: true, Detail: ver})
	if got, err := run(nixArgs("eval", "--json", "--expr", flakesProbe)...); err != nil || got != "true" {
		add(Check{Name: "nix flakes", Required: true, Detail: fmt.Sprintf("nix %s eval --expr %q: %q %v", sshx.ShellQuote(NixFlags), flakesProbe, got, err), Fix: "use Nix 2.4 or newer (flakes)"})
	} else {
		add(Check{Name: "nix flakes", OK: true, Required: true, Detail: "devvm passes " + sshx.ShellQuote(NixFlags) + " to every nix it runs, so nix.conf needs no change"})
	}
	flake := vf.Resolve(vf.MicroVM.Flake)
	if _, err := os.Stat(filepath.Join(flake, "flake.nix")); err != nil {
		add(Check{Name: "flake", Required: vf.MicroVM.Remote == nil || vf.MicroVM.Remote.Sync == "copy", Detail: "no flake.nix in " + flake, Fix: "set microvm.flake to the flake's directory in the checkout"})
	} else if names, err := run(listConfigsArgs(flake)...); err != nil {
		add(Check{Name: "flake", Required: true, Detail: "the flake does not evaluate: " + err.Error(), Fix: "nix flake check " + flake + " shows why"})
	} else if configs, err := parseConfigs(names); err != nil {
		add(Check{Name: "flake", Required: true, Detail: err.Error()})
	} else if err := CheckMachines(vf, configs); err != nil {
		// A fully declarative VM is in its host's microvm.vms only: the hypervisor knows (devvm up checks there).
		add(Check{Name: "flake", Required: vf.MicroVM.Remote == nil, Detail: err.Error(), Fix: "`devvm init --backend microvm` writes the Vmfile from the flake"})
	} else {
		add(Check{Name: "flake", OK: true, Required: true, Detail: fmt.Sprintf("%s defines %s", flake, strings.Join(configs, ", "))})
		out = append(out, loginChecks(ctx, env, vf, flake)...)
	}
	return append(out, hostChecks(ctx, env, vf)...)
}

// loginChecks compares, for every machine, the keys its configuration
// authorizes for the Vmfile's user with the keys devvm offers. Not required:
// a guest may authorize keys in ways the flake does not show (keyFiles, an
// AuthorizedKeysCommand).
func loginChecks(ctx context.Context, env *hostenv.Env, vf *vmfile.Vmfile, flake string) []Check {
	d, err := DiscoverMachines(ctx, env, flake)
	if err != nil {
		return []Check{{Name: "logins", Detail: err.Error()}}
	}
	key, err := sshx.EnsureUserKey(env.DataDir)
	if err != nil {
		return []Check{{Name: "logins", Detail: err.Error()}}
	}
	var out []Check
	for _, n := range sortedNames(vf) {
		mc := vf.MicroVM.Machines[n]
		i := slices.IndexFunc(d.Machines, func(m Discovered) bool { return m.Name == mc.Config })
		if i < 0 {
			continue
		}
		t := &sshx.Target{User: mc.User, Key: key, UseAgent: true}
		keys := d.Machines[i].Logins[mc.User]
		matched := authorizedAmong(keys, t)
		c := Check{Name: "login " + n, OK: len(matched) > 0}
		switch {
		case c.OK:
			c.Detail = fmt.Sprintf("nixosConfigurations.%s authorizes %s for %s", mc.Config, strings.Join(matched, ", "), mc.User)
		default:
			c.Detail = fmt.Sprintf("nixosConfigurations.%s authorizes %d key(s) for %s, none of those devvm offers (%s)", mc.Config, len(keys), mc.User, strings.Join(sshx.OfferedKeys(t), "; "))
			c.Fix = fmt.Sprintf("load the key it authorizes into your agent (ssh-add KEY), or add devvm's key (%s) to users.users.%s.openssh.authorizedKeys.keys", key.PublicPath, mc.User)
		}
		out = append(out, c)
	}
	return out
}

// hostChecks are the checks of where the VMs run.
func hostChecks(ctx context.Context, env *hostenv.Env, vf *vmfile.Vmfile) []Check {
	if vf.MicroVM.Remote == nil {
		k := env.KVM()
		c := Check{Name: "kvm", OK: k.Usable, Detail: "KVM is usable"}
		if !k.Usable {
			c.Detail, c.Fix = k.Reason+": microvm.nix's qemu runner falls back to TCG (accel=kvm:tcg), many times slower", "enable hardware virtualization, load kvm-intel or kvm-amd, join the kvm group"
		}
		return []Check{c}
	}
	return remoteChecks(ctx, env, vf)
}

func remoteChecks(ctx context.Context, env *hostenv.Env, vf *vmfile.Vmfile) []Check {
	var out []Check
	add := func(c Check) { out = append(out, c) }
	c := &common{vf: vf, env: env, ui: &backend.UI{Err: io.Discard}}
	r, err := newRemote(c)
	if err != nil {
		add(Check{Name: "hypervisor", Required: true, Detail: err.Error()})
		return out
	}
	defer r.Close()
	conn, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", r.dest.Addr())
	if err != nil {
		add(Check{Name: "hypervisor reachable", Required: true, Detail: err.Error(), Fix: "check microvm.remote.destination, the network (VPN, Tailscale) and that sshd runs on " + r.dest.Addr()})
		return out
	}
	conn.Close()
	add(Check{Name: "hypervisor reachable", OK: true, Required: true, Detail: "TCP " + r.dest.Addr() + " answers"})
	cl, err := r.client(ctx)
	var unknown *sshx.HostKeyUnknownError
	var mismatch *sshx.HostKeyMismatchError
	switch {
	case errors.As(err, &unknown):
		add(Check{Name: "hypervisor host key", Required: true, Detail: fmt.Sprintf("%s has no entry for %s", r.hvT.KnownHosts, r.dest.Addr()),
			Fix: fmt.Sprintf("compare `ssh-keyscan -p %d %s` with the key the hypervisor shows on its console (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then append that line to %s", r.dest.Port, r.dest.Host, r.hvT.KnownHosts)})
		return out
	case errors.As(err, &mismatch):
		add(Check{Name: "hypervisor host key", Required: true, Detail: err.Error(), Fix: "if the hypervisor was reinstalled, remove its old line from " + r.hvT.KnownHosts + " (ssh-keygen -R), then add the new key"})
		return out
	}
	add(Check{Name: "hypervisor host key", OK: true, Required: true, Detail: "recorded in " + r.hvT.KnownHosts})
	if err != nil {
		fix := ""
		if errors.Is(err, sshx.ErrAuthRefused) {
			fix = fmt.Sprintf("offered: %s; authorize one for %s on the hypervisor (users.users.%s.openssh.authorizedKeys.keys), or set microvm.remote.identity_file", strings.Join(sshx.OfferedKeys(r.hvT), "; "), r.dest.User, r.dest.User)
		}
		add(Check{Name: "hypervisor login", Required: true, Detail: err.Error(), Fix: fix})
		return out
	}
	add(Check{Name: "hypervisor login", OK: true, Required: true, Detail: "logged in as " + r.dest.User})
	sh := func(cmd string) (string, error) {
		var o, e bytes.Buffer
		code, err := cl.Run(ctx, cmd, nil, &o, &e, false)
		if err == nil && code != 0 {
			err = fmt.Errorf("exit status %d: %s", code, strings.TrimSpace(tail(e.String(), 3)))
		}
		return strings.TrimSpace(o.String()), err
	}
	rm := vf.MicroVM.Remote
	if rm.Sync == "git-pull" {
		if _, err := sh("git -C " + shq(rm.Checkout) + " rev-parse --git-dir"); err != nil {
			add(Check{Name: "hypervisor checkout", Required: true, Detail: rm.Checkout + " is not a git checkout: " + err.Error(), Fix: "git clone your repository to " + rm.Checkout + " on the hypervisor (devvm pulls there), or set microvm.remote.sync = \"copy\""})
		} else {
			add(Check{Name: "hypervisor checkout", OK: true, Required: true, Detail: rm.Checkout})
		}
	}
	if p, err := sh("command -v microvm"); err != nil {
		add(Check{Name: "microvm command", Required: true, Detail: "no microvm in the hypervisor's PATH", Fix: "import microvm.nixosModules.host in the hypervisor's NixOS configuration (it installs the microvm command)"})
	} else {
		add(Check{Name: "microvm command", OK: true, Required: true, Detail: p})
	}
	// What the microvm command's own nix sees: devvm's flags do not reach it.
	if got, err := sh("nix eval --json --expr " + shq(flakesProbe)); err != nil || got != "true" {
		add(Check{Name: "hypervisor flakes", Required: true, Detail: fmt.Sprintf("nix on the hypervisor has no flakes enabled (%q %v): microvm -c/-u run nix build FLAKE#…", got, err), Fix: `add nix.settings.experimental-features = [ "nix-command" "flakes" ]; to the hypervisor's configuration`})
	} else {
		add(Check{Name: "hypervisor flakes", OK: true, Required: true, Detail: "enabled in the hypervisor's nix.conf"})
	}
	if _, err := sh("test -c /dev/kvm"); err != nil {
		add(Check{Name: "hypervisor kvm", Required: true, Detail: "the hypervisor has no /dev/kvm: microvm.nix's runners need KVM", Fix: "use a host with hardware virtualization (a bare-metal instance such as AWS *.metal, or nested virtualization) and load kvm-intel or kvm-amd"})
	} else {
		add(Check{Name: "hypervisor kvm", OK: true, Required: true, Detail: "/dev/kvm present"})
	}
	return out
}
