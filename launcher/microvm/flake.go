package microvm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/sshx"
	"github.com/devvm/devvm/launcher/vmfile"
)

// NixFlags come first on every nix command devvm runs itself, so that a stock
// Nix (flakes still experimental, nothing in nix.conf) evaluates flakes. The
// `microvm` command on a hypervisor runs its own nix and needs flakes enabled
// in the hypervisor's nix.conf (DoctorChecks says so).
var NixFlags = []string{"--extra-experimental-features", "nix-command flakes"}

// nixArgs is NixFlags followed by args.
func nixArgs(args ...string) []string { return append(slices.Clone(NixFlags), args...) }

// nixCmd is the nix command line for the hypervisor's shell (NixFlags included).
func nixCmd(args ...string) string { return "nix " + sshx.ShellQuote(nixArgs(args...)) }

// discoverExpr is applied with `nix eval --json FLAKE#nixosConfigurations
// --apply` and returns, for every configuration, what devvm needs to write a
// Vmfile: guests are those with the microvm module (they have
// config.microvm.declaredRunner, nixos-modules/microvm/options.nix
// `declaredRunner = mkOption`), hypervisors those with the host module
// (config.microvm.vms, nixos-modules/host/options.nix `vms = mkOption`). The
// `?` and `or` tests only look at attribute names, so nothing is built.
const discoverExpr = `cs: let
  inherit (builtins) attrNames attrValues concatMap filter head isAttrs isString listToAttrs mapAttrs split;
  noPrefix = a: head (split "/" a);
  ifaceAddrs = cfg: concatMap (i: map (a: a.address or "") (i.ipv4.addresses or [])) (attrValues (cfg.networking.interfaces or {}));
  netdAddrs = cfg: concatMap (n:
      map noPrefix (filter isString (n.address or []))
      ++ map (a: noPrefix (a.Address or (a.addressConfig.Address or ""))) (filter isAttrs (n.addresses or [])))
    (attrValues (cfg.systemd.network.networks or {}));
  users = cfg: let us = cfg.users.users or {}; in
    listToAttrs (concatMap (n: let u = us.${n}; keys = u.openssh.authorizedKeys.keys or []; in
      if (u.isNormalUser or false) || n == "root" then [{ name = n; value = { normal = u.isNormalUser or false; inherit keys; }; }] else [])
      (attrNames us));
  guest = c: let cfg = c.config; in {
    hostName = cfg.networking.hostName or "";
    hypervisor = cfg.microvm.hypervisor or "";
    system = cfg.nixpkgs.hostPlatform.system or "";
    forwardPorts = map (f: {
      from = f.from or "host"; proto = f.proto or "tcp";
      host = { address = f.host.address or ""; port = f.host.port or 0; };
      guest = { address = f.guest.address or ""; port = f.guest.port or 0; };
    }) (cfg.microvm.forwardPorts or []);
    interfaces = map (i: i.type or "") (cfg.microvm.interfaces or []);
    sshPorts = if (cfg.services.openssh.enable or false) then (cfg.services.openssh.ports or [ 22 ]) else [ ];
    addresses = filter (a: a != "") (ifaceAddrs cfg ++ netdAddrs cfg);
    users = users cfg;
  };
in mapAttrs (n: c: if !(isAttrs c && c ? config) then { guest = null; vms = null; } else {
  guest = if c.config ? microvm.declaredRunner then guest c else null;
  vms = if c.config ? microvm.vms then mapAttrs (vn: v: {
      flake = (v.flake or null) != null;
      updateFlake = v.updateFlake or null;
      declarative = (v.config or null) != null;
      guest = if (v.config or null) != null then guest v.config else null;
    }) c.config.microvm.vms else null;
}) cs`

// evalGuest is what discoverExpr says about one guest.
type evalGuest struct {
	HostName     string                `json:"hostName"`
	Hypervisor   string                `json:"hypervisor"`
	System       string                `json:"system"`
	ForwardPorts []ForwardPort         `json:"forwardPorts"`
	Interfaces   []string              `json:"interfaces"`
	SSHPorts     []int                 `json:"sshPorts"`
	Addresses    []string              `json:"addresses"`
	Users        map[string]evalUserAK `json:"users"`
}

type evalUserAK struct {
	Normal bool     `json:"normal"`
	Keys   []string `json:"keys"`
}

type evalVM struct {
	Flake       bool       `json:"flake"`
	UpdateFlake *string    `json:"updateFlake"`
	Declarative bool       `json:"declarative"`
	Guest       *evalGuest `json:"guest"`
}

type evalConfig struct {
	Guest *evalGuest         `json:"guest"`
	VMs   map[string]*evalVM `json:"vms"`
}

// Discovered is one microvm.nix machine of a flake.
type Discovered struct {
	// Name is the machine's name: its nixosConfigurations name, or its
	// microvm.vms name for a fully declarative VM.
	Name string
	// HostName is the guest's networking.hostName.
	HostName string
	// Hypervisor is microvm.hypervisor (qemu, cloud-hypervisor, …).
	Hypervisor string
	// System is the guest's nixpkgs.hostPlatform.system (e.g. aarch64-linux).
	System string
	// Addresses are the guest's static IPv4 addresses
	// (networking.interfaces.*.ipv4.addresses, systemd.network.networks.*.address{,es}).
	Addresses []string
	// SSHPort is the guest's sshd port (services.openssh.ports[0]); 0 when sshd is off.
	SSHPort int
	// ForwardedSSH is the host port of a qemu user-network forward to SSHPort, 0 when none.
	ForwardedSSH int
	// User is the login the Vmfile gets: the normal user with authorized
	// keys (the first by name), else root when root has keys, else "".
	User string
	// AuthorizedKeys are the keys of User.
	AuthorizedKeys []string
	// Logins are the authorized keys of every normal user and root.
	Logins map[string][]string
	// Host is the nixosConfigurations entry whose microvm.vms declares the
	// machine ("" when none: an imperative VM, created with `microvm -c`).
	Host string
	// UpdateFlake is microvm.vms.NAME.updateFlake ("" when unset).
	UpdateFlake string
	// Declarative is a fully declarative VM (microvm.vms.NAME.config),
	// deployed by switching its host, never by `microvm -u`.
	Declarative bool
	// InFlake is false for a declarative VM: it has no nixosConfigurations entry.
	InFlake bool
}

// Discovery is everything DiscoverMachines found.
type Discovery struct {
	// Machines, sorted by name.
	Machines []Discovered
	// Hosts are the configurations with the microvm host module.
	Hosts []string
	// Configs are all nixosConfigurations names.
	Configs []string
}

// DiscoverMachines lists the microvm.nix machines of the flake in dir with
// one `nix eval --json` (nothing is built).
func DiscoverMachines(ctx context.Context, env *hostenv.Env, dir string) (*Discovery, error) {
	args := nixArgs("eval", "--json", dir+"#nixosConfigurations", "--apply", discoverExpr)
	cmd := env.Command(ctx, "nix", args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("nix is not installed or not in PATH: install Nix (https://nixos.org/download) to read the flake in %s", dir)
		}
		return nil, fmt.Errorf("listing the machines of the flake in %s: `nix eval --json %s#nixosConfigurations --apply …` failed (%v):\n  %s", dir, dir, err, strings.ReplaceAll(tail(errb.String(), 20), "\n", "\n  "))
	}
	return parseDiscovery(out.Bytes())
}

// parseDiscovery reads the JSON of discoverExpr.
func parseDiscovery(data []byte) (*Discovery, error) {
	var cs map[string]evalConfig
	if err := json.Unmarshal(data, &cs); err != nil {
		return nil, fmt.Errorf("unexpected answer from nix eval (%v): %.300s", err, data)
	}
	d := &Discovery{}
	byName := map[string]*Discovered{}
	for name, c := range cs {
		d.Configs = append(d.Configs, name)
		if c.Guest != nil {
			m := fromGuest(name, c.Guest)
			m.InFlake = true
			byName[name] = &m
		}
	}
	for host, c := range cs {
		if c.VMs == nil {
			continue
		}
		d.Hosts = append(d.Hosts, host)
		for vn, v := range c.VMs {
			m, ok := byName[vn]
			if !ok {
				if v.Guest == nil {
					// flake = another flake: its nixosConfigurations are not this flake's.
					continue
				}
				nm := fromGuest(vn, v.Guest)
				m = &nm
				byName[vn] = m
			}
			m.Host, m.Declarative = host, v.Declarative
			if v.UpdateFlake != nil {
				m.UpdateFlake = *v.UpdateFlake
			}
		}
	}
	for _, m := range byName {
		d.Machines = append(d.Machines, *m)
	}
	sort.Slice(d.Machines, func(i, j int) bool { return d.Machines[i].Name < d.Machines[j].Name })
	sort.Strings(d.Hosts)
	sort.Strings(d.Configs)
	return d, nil
}

func fromGuest(name string, g *evalGuest) Discovered {
	m := Discovered{Name: name, HostName: g.HostName, Hypervisor: g.Hypervisor, System: g.System}
	for _, a := range g.Addresses {
		if isIPv4(a) && !slices.Contains(m.Addresses, a) {
			m.Addresses = append(m.Addresses, a)
		}
	}
	if len(g.SSHPorts) > 0 {
		m.SSHPort = g.SSHPorts[0]
		if b, _ := json.Marshal(g.ForwardPorts); len(b) > 0 {
			if _, p, err := sshForward(b, m.SSHPort); err == nil {
				m.ForwardedSSH = p
			}
		}
	}
	var names []string
	for n := range g.Users {
		names = append(names, n)
	}
	sort.Strings(names)
	m.Logins = map[string][]string{}
	for _, n := range names {
		m.Logins[n] = g.Users[n].Keys
	}
	for _, n := range names {
		if u := g.Users[n]; u.Normal && len(u.Keys) > 0 {
			m.User, m.AuthorizedKeys = n, u.Keys
			break
		}
	}
	if u, ok := g.Users["root"]; m.User == "" && ok && len(u.Keys) > 0 {
		m.User, m.AuthorizedKeys = "root", u.Keys
	}
	return m
}

func isIPv4(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return false
	}
	for _, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 255 || p == "" {
			return false
		}
	}
	return true
}

// Names lists the machine names.
func (d *Discovery) Names() []string {
	var out []string
	for _, m := range d.Machines {
		out = append(out, m.Name)
	}
	return out
}

// CheckMachines fails when the Vmfile names a machine (its config) that the
// flake lacks, naming those the flake has. configs are the flake's
// nixosConfigurations names (Discovery.Configs, or listConfigsExpr's answer).
func CheckMachines(vf *vmfile.Vmfile, configs []string) error {
	return checkMachines(vf, sortedNames(vf), configs, vf.Resolve(vf.MicroVM.Flake))
}

// sortedNames are the Vmfile's machine names, sorted.
func sortedNames(vf *vmfile.Vmfile) []string {
	var names []string
	for n := range vf.MicroVM.Machines {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// checkMachines is CheckMachines for some of the Vmfile's machines, in the
// flake at flake.
func checkMachines(vf *vmfile.Vmfile, names, configs []string, flake string) error {
	var missing []string
	for _, n := range names {
		c := vf.MicroVM.Machines[n].Config
		if !slices.Contains(configs, c) {
			if c == n {
				missing = append(missing, fmt.Sprintf("%q", n))
			} else {
				missing = append(missing, fmt.Sprintf("%q (config = %q)", n, c))
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	have := "none"
	if len(configs) > 0 {
		have = strings.Join(configs, ", ")
	}
	return fmt.Errorf("%s names machine %s, but the flake %s has no such nixosConfigurations entry; it has: %s\nhint: rename the [microvm.machines.NAME] table or set its config = \"…\", or let `devvm init --backend microvm` rewrite the Vmfile from the flake", vf.Path, strings.Join(missing, ", "), flake, have)
}

// listConfigsArgs are the nix arguments that print the flake's
// nixosConfigurations names as a JSON list (no configuration is evaluated).
func listConfigsArgs(flake string) []string {
	return nixArgs("eval", "--json", flake+"#nixosConfigurations", "--apply", "builtins.attrNames")
}

// parseConfigs reads the answer of listConfigsArgs.
func parseConfigs(out string) ([]string, error) {
	var names []string
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &names); err != nil {
		return nil, fmt.Errorf("unexpected answer listing the flake's nixosConfigurations (%v): %.200s", err, out)
	}
	return names, nil
}

// RenderOptions are the Vmfile-wide parts RenderVmfile writes.
type RenderOptions struct {
	// Name of the project (the Vmfile's name key); "" leaves it out.
	Name string
	// User is the ssh.user default; "" picks the most common discovered user.
	User string
	// Flake is the flake directory relative to the checkout ("." default).
	Flake string
	// Remote, when set, is written as [microvm.remote]; machines are then
	// addressed by their static address, else through their SSH forward on 127.0.0.1.
	Remote *vmfile.Remote
}

var vmNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// RenderVmfile writes a Vmfile for the discovered machines. Each machine is
// commented with where it comes from; what devvm could not find (an address,
// an SSH forward, a login) is a comment saying what to fill in.
func RenderVmfile(ms []Discovered, o RenderOptions) []byte {
	var b strings.Builder
	user := o.User
	if user == "" {
		count := map[string]int{}
		for _, m := range ms {
			if m.User != "" {
				count[m.User]++
			}
		}
		for u, n := range count {
			if user == "" || n > count[user] || (n == count[user] && u < user) {
				user = u
			}
		}
	}
	b.WriteString("# Written by devvm from the flake's microvm.nix machines (nix eval of nixosConfigurations).\n")
	if o.Name != "" {
		fmt.Fprintf(&b, "name = %s\n", tomlString(o.Name))
	}
	b.WriteString("backend = \"microvm\"\n\n")
	if user != "" {
		fmt.Fprintf(&b, "[ssh]\nuser = %s\n\n", tomlString(user))
	}
	flake := o.Flake
	if flake == "" {
		flake = "."
	}
	fmt.Fprintf(&b, "[microvm]\nflake = %s\n", tomlString(flake))
	for _, m := range ms {
		name := strings.ToLower(m.Name)
		if !vmNameRe.MatchString(name) {
			name = "vm-" + strings.Trim(regexp.MustCompile(`[^a-z0-9_-]+`).ReplaceAllString(name, "-"), "-")
		}
		b.WriteString("\n")
		fmt.Fprintf(&b, "# %s\n", describe(m))
		fmt.Fprintf(&b, "[microvm.machines.%s]\n", name)
		if name != m.Name {
			fmt.Fprintf(&b, "config = %s\n", tomlString(m.Name))
		}
		switch {
		case o.Remote == nil && m.ForwardedSSH > 0:
			fmt.Fprintf(&b, "address = \"127.0.0.1\"\nport = %d                          # host port of its forwardPorts entry to guest port %d\n", m.ForwardedSSH, m.SSHPort)
		case o.Remote == nil:
			b.WriteString("address = \"127.0.0.1\"\n# no microvm.forwardPorts entry to the guest's sshd: add { from = \"host\"; host.port = 2222; guest.port = 22; } (qemu, type = \"user\" interface)\n")
		case len(m.Addresses) > 0:
			fmt.Fprintf(&b, "address = %s\n", tomlString(m.Addresses[0]))
			if m.SSHPort != 0 && m.SSHPort != 22 {
				fmt.Fprintf(&b, "port = %d\n", m.SSHPort)
			}
		default:
			b.WriteString("address = \"\"                        # the flake declares no static IPv4 address: give the guest's address\n")
		}
		if m.User != "" && m.User != user {
			fmt.Fprintf(&b, "user = %s\n", tomlString(m.User))
		}
		if m.SSHPort == 0 {
			b.WriteString("# services.openssh is not enabled in this guest: devvm needs its sshd\n")
		}
	}
	if r := o.Remote; r != nil {
		b.WriteString("\n[microvm.remote]\n")
		fmt.Fprintf(&b, "destination = %s\n", tomlString(r.Destination))
		if r.IdentityFile != "" {
			fmt.Fprintf(&b, "identity_file = %s\n", tomlString(r.IdentityFile))
		}
		if r.KnownHosts != "" {
			fmt.Fprintf(&b, "known_hosts = %s\n", tomlString(r.KnownHosts))
		}
		fmt.Fprintf(&b, "checkout = %s\n", tomlString(r.Checkout))
		if r.Sync != "" && r.Sync != "git-pull" {
			fmt.Fprintf(&b, "sync = %s\n", tomlString(r.Sync))
		}
	}
	return []byte(b.String())
}

func describe(m Discovered) string {
	var parts []string
	if m.InFlake {
		parts = append(parts, "nixosConfigurations."+m.Name)
	}
	if m.Host != "" {
		d := "nixosConfigurations." + m.Host + ".config.microvm.vms." + m.Name
		switch {
		case m.Declarative:
			d += " (fully declarative: deployed by switching " + m.Host + ")"
		case m.UpdateFlake != "":
			d += " (updateFlake = " + strconv.Quote(m.UpdateFlake) + ")"
		}
		parts = append(parts, d)
	}
	var what []string
	for _, s := range []string{m.Hypervisor, m.System} {
		if s != "" {
			what = append(what, s)
		}
	}
	if m.User != "" {
		what = append(what, fmt.Sprintf("login %s with %d authorized key(s)", m.User, len(m.AuthorizedKeys)))
	} else {
		what = append(what, "no user with authorized keys")
	}
	return strings.Join(parts, ", ") + ": " + strings.Join(what, ", ")
}

// tomlString is s as a TOML basic string.
func tomlString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
