package microvm

import (
	"encoding/json"
	"fmt"
	"net"
	"os/user"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/sshx"
)

// dest is a parsed user@host[:port].
type dest struct {
	User, Host string
	Port       int
}

// Addr is host:port for dialing.
func (d dest) Addr() string { return net.JoinHostPort(d.Host, strconv.Itoa(d.Port)) }

// String is the destination as OpenSSH writes it (user@host, or ssh://user@host:port).
func (d dest) String() string {
	if d.Port == 22 {
		return d.User + "@" + d.Host
	}
	return fmt.Sprintf("ssh://%s@%s:%d", d.User, d.Host, d.Port)
}

// parseDest parses the Vmfile's microvm.remote.destination: [user@]host[:port],
// host possibly a bracketed IPv6 address. The user defaults to the local one.
func parseDest(s string) (dest, error) {
	d := dest{Port: 22}
	if i := strings.LastIndex(s, "@"); i >= 0 {
		d.User, s = s[:i], s[i+1:]
	}
	host := s
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return dest{}, fmt.Errorf("destination %q: unclosed '['", s)
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return dest{}, fmt.Errorf("destination %q: expected :port after ']'", s)
			}
			p, err := strconv.Atoi(rest[1:])
			if err != nil || p < 1 || p > 65535 {
				return dest{}, fmt.Errorf("destination %q: bad port %q", s, rest[1:])
			}
			d.Port = p
		}
	} else if i := strings.LastIndex(s, ":"); i >= 0 {
		p, err := strconv.Atoi(s[i+1:])
		if err != nil || p < 1 || p > 65535 {
			return dest{}, fmt.Errorf("destination %q: bad port %q", s, s[i+1:])
		}
		host, d.Port = s[:i], p
	}
	if host == "" {
		return dest{}, fmt.Errorf("destination %q has no host", s)
	}
	d.Host = host
	if d.User == "" {
		u, err := user.Current()
		if err != nil {
			return dest{}, fmt.Errorf("destination %q names no user and the local user is unknown (%v): write user@host", s, err)
		}
		d.User = u.Username
	}
	return d, nil
}

// vmInfo is what the hypervisor says about one VM.
type vmInfo struct {
	Name    string // the VM's name on the hypervisor (nixosConfigurations name)
	Active  string // `systemctl is-active microvm@NAME`: active, inactive, failed, activating…
	Exists  bool   // /var/lib/microvms/NAME exists
	Current string // readlink current ("" when missing)
	Booted  string // readlink booted ("" when missing)
	Old     string // readlink old ("" when missing)
	// HasFlake: DIR/flake exists; Flake is what it holds (the flake
	// reference `microvm -u` builds from, pkgs/microvm-command.nix L85).
	HasFlake bool
	Flake    string
	// Toplevel is readlink DIR/toplevel: a fully declarative VM, which
	// `microvm -u` refuses (pkgs/microvm-command.nix L80-83).
	Toplevel string
	// Entries are the first names in DIR ("" for an empty directory).
	Entries string
}

// infoScript is the shell loop that prints one tab-separated vmInfo line per VM.
func infoScript(stateDir string, names []string) string {
	dir := shq(stateDir) + `/"$vm"`
	return "for vm in " + strings.Join(quoteAll(names), " ") + `; do printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$vm"` +
		` "$(systemctl is-active microvm@"$vm")" "$(test -d ` + dir + ` && echo yes)"` +
		` "$(readlink ` + dir + `/current)" "$(readlink ` + dir + `/booted)" "$(readlink ` + dir + `/old)"` +
		` "$(test -f ` + dir + `/flake && { printf +; head -c 4096 ` + dir + `/flake | tr '\t\n\r' '   '; })"` +
		` "$(readlink ` + dir + `/toplevel)" "$(ls -A ` + dir + ` 2>/dev/null | head -n 8 | tr '\t\n' '  ')"; done`
}

// parseInfo reads the output of infoScript.
func parseInfo(out string) (map[string]vmInfo, error) {
	m := map[string]vmInfo{}
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 9 {
			return nil, fmt.Errorf("unexpected line from the hypervisor's status query: %q", line)
		}
		fl, hasFlake := strings.CutPrefix(f[6], "+")
		m[f[0]] = vmInfo{Name: f[0], Active: f[1], Exists: f[2] == "yes", Current: f[3], Booted: f[4], Old: f[5],
			HasFlake: hasFlake, Flake: strings.TrimSpace(fl), Toplevel: f[7], Entries: strings.TrimSpace(f[8])}
	}
	return m, nil
}

// classify turns vmInfo into a status (state, reason, hint).
func classify(i vmInfo, devName string) backend.Status {
	s := backend.Status{Name: devName, Backend: "microvm", BuildKey: path.Base(i.Current)}
	if i.Current == "" {
		s.BuildKey = ""
	}
	switch {
	case !i.Exists:
		s.State, s.Reason = backend.Stopped, "not created on the hypervisor"
		s.Hint = fmt.Sprintf("`devvm up %s` creates and starts it", devName)
	case i.Active == "active" && i.Booted != "" && i.Booted != i.Current:
		s.State, s.Outdated = backend.Outdated, true
		s.Reason = fmt.Sprintf("booted %s but current is %s", path.Base(i.Booted), path.Base(i.Current))
		s.Hint = fmt.Sprintf("`devvm restart %s` boots the current runner", devName)
	case i.Active == "active":
		s.State = backend.Running
	case i.Active == "failed":
		s.State, s.Reason = backend.Failed, "microvm@"+i.Name+" failed"
		s.Hint = fmt.Sprintf("`devvm logs %s` shows why; `devvm restart %s` tries again", devName, devName)
	case i.Active == "activating" || i.Active == "reloading":
		s.State, s.Reason = backend.Starting, "microvm@"+i.Name+" is "+i.Active
	case i.Current == "":
		s.State, s.Reason = backend.Stopped, "no runner: the current link is missing, so systemd would skip its start"
		s.Hint = fmt.Sprintf("`devvm up %s` rebuilds it", devName)
	default:
		s.State = backend.Stopped
		if i.Active != "inactive" && i.Active != "" {
			s.Reason = "microvm@" + i.Name + " is " + i.Active
		}
		s.Hint = fmt.Sprintf("`devvm up %s` starts it", devName)
	}
	return s
}

// ForwardPort is one entry of microvm.forwardPorts (nix eval --json).
type ForwardPort struct {
	From  string `json:"from"`
	Proto string `json:"proto"`
	Host  struct {
		Address string `json:"address"`
		Port    int    `json:"port"`
	} `json:"host"`
	Guest struct {
		Address string `json:"address"`
		Port    int    `json:"port"`
	} `json:"guest"`
}

// sshForward finds the host port forwarded to guestPort over TCP in the
// JSON of `nix eval --json …config.microvm.forwardPorts`.
func sshForward(data []byte, guestPort int) (bind string, port int, err error) {
	var fps []ForwardPort
	if err := json.Unmarshal(data, &fps); err != nil {
		return "", 0, fmt.Errorf("microvm.forwardPorts is not the expected JSON list (%v): %.200s", err, data)
	}
	for _, f := range fps {
		from, proto := f.From, f.Proto
		if from == "" {
			from = "host"
		}
		if proto == "" {
			proto = "tcp"
		}
		if from == "host" && proto == "tcp" && f.Guest.Port == guestPort && f.Host.Port > 0 {
			bind = f.Host.Address
			if bind == "" || bind == "0.0.0.0" {
				bind = "127.0.0.1"
			}
			return bind, f.Host.Port, nil
		}
	}
	return "", 0, fmt.Errorf("microvm.forwardPorts has no TCP forward from the host to guest port %d: add { from = \"host\"; host.port = 2222; guest.port = %d; } (with a type = \"user\" interface) to the VM's config", guestPort, guestPort)
}

// hostForward finds, in the JSON of microvm.forwardPorts, the TCP forward
// from the host port the Vmfile gives (a local machine's `port` is the host
// port, what the user types in `ssh -p`). The default port 22, when no
// forward is from host port 22, means "the forward to the guest's sshd".
func hostForward(data []byte, port int) (bind string, hostPort int, err error) {
	var fps []ForwardPort
	if err := json.Unmarshal(data, &fps); err != nil {
		return "", 0, fmt.Errorf("microvm.forwardPorts is not the expected JSON list (%v): %.200s", err, data)
	}
	var have []string
	for _, f := range fps {
		if (f.From != "" && f.From != "host") || (f.Proto != "" && f.Proto != "tcp") {
			continue
		}
		have = append(have, fmt.Sprintf("host %d → guest %d", f.Host.Port, f.Guest.Port))
		if f.Host.Port == port {
			bind = f.Host.Address
			if bind == "" || bind == "0.0.0.0" {
				bind = "127.0.0.1"
			}
			return bind, port, nil
		}
	}
	if port == 22 {
		return sshForward(data, 22)
	}
	return "", 0, fmt.Errorf("the Vmfile gives port = %d (the host port devvm connects to), but microvm.forwardPorts has no TCP forward from host port %d (it has %s): add { from = \"host\"; host.port = %d; guest.port = 22; } to the VM's config or change port", port, port, orNone(have), port)
}

var freedRe = regexp.MustCompile(`([0-9]+) store paths deleted, ([0-9.]+) MiB freed`)

// parseFreed reads nix's GC summary; -1 when it has none.
func parseFreed(out string) int64 {
	m := freedRe.FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		return -1
	}
	f, err := strconv.ParseFloat(m[len(m)-1][2], 64)
	if err != nil {
		return -1
	}
	return int64(f * (1 << 20))
}

// shq quotes one word for the remote shell.
func shq(s string) string { return quoteAll([]string{s})[0] }

func quoteAll(words []string) []string {
	out := make([]string, len(words))
	for i, w := range words {
		out[i] = sshx.ShellQuote([]string{w})
	}
	return out
}
