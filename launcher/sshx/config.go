package sshx

import (
	"fmt"
	"strconv"
	"strings"
)

// ConfigOptions describes the OpenSSH client configuration written by SSHConfig.
type ConfigOptions struct {
	Host          string // Host pattern, e.g. "devvm-<name>"
	HostName      string // e.g. "127.0.0.1"
	Port          string // e.g. "10022"; empty means 22
	User          string
	IdentityFile  string   // Key.PrivatePath
	KnownHosts    string   // the pinned known_hosts file (Target.KnownHosts)
	HostKeyAlias  string   // name of the pinned key (Target.HostKeyAlias)
	ProxyJump     string   // optional, OpenSSH ProxyJump syntax
	ForwardAgent  bool     // ForwardAgent yes
	LocalForwards []string // ParseForward specs, e.g. "8080:localhost:80"
	Ciphers       []string // cipher preference (Target.Ciphers); empty leaves OpenSSH's default
}

// SSHConfig returns an OpenSSH "Host" stanza (for `ssh -F file` or an Include) that connects
// like devvm does: only devvm's key, strict host key checking against the pinned file under
// HostKeyAlias, no passwords. Values that cannot be written safely (line breaks, quotes,
// missing required fields) are refused.
func SSHConfig(o ConfigOptions) (string, error) {
	for _, f := range []struct{ name, v string }{
		{"Host", o.Host}, {"HostName", o.HostName}, {"User", o.User},
		{"IdentityFile", o.IdentityFile}, {"KnownHosts", o.KnownHosts}, {"HostKeyAlias", o.HostKeyAlias},
	} {
		if f.v == "" {
			return "", fmt.Errorf("ssh config: %s is required", f.name)
		}
	}
	if o.Port != "" {
		if err := checkPort(o.Port, false); err != nil {
			return "", fmt.Errorf("ssh config: Port: %w", err)
		}
	}
	var b strings.Builder
	var bad error
	line := func(key string, path bool, vals ...string) {
		if bad != nil {
			return
		}
		b.WriteString("  " + key)
		for _, v := range vals {
			q, err := configValue(v, path)
			if err != nil {
				bad = fmt.Errorf("ssh config: %s: %w", key, err)
				return
			}
			b.WriteString(" " + q)
		}
		b.WriteString("\n")
	}
	if strings.ContainsAny(o.Host, " \t\"*?!,") {
		return "", fmt.Errorf("ssh config: Host %q must be a single name without spaces, quotes or patterns", o.Host)
	}
	if _, err := configValue(o.Host, false); err != nil {
		return "", fmt.Errorf("ssh config: Host: %w", err)
	}
	fmt.Fprintf(&b, "Host %s\n", o.Host)
	line("HostName", false, o.HostName)
	if o.Port != "" {
		line("Port", false, o.Port)
	}
	line("User", false, o.User)
	line("IdentityFile", true, o.IdentityFile)
	line("IdentitiesOnly", false, "yes")
	line("UserKnownHostsFile", true, o.KnownHosts)
	line("GlobalKnownHostsFile", false, "/dev/null")
	line("StrictHostKeyChecking", false, "yes")
	line("HostKeyAlias", false, o.HostKeyAlias)
	line("HostKeyAlgorithms", false, "ssh-ed25519")
	line("UpdateHostKeys", false, "no")
	line("CheckHostIP", false, "no")
	line("PasswordAuthentication", false, "no")
	line("KbdInteractiveAuthentication", false, "no")
	if len(o.Ciphers) > 0 {
		line("Ciphers", false, strings.Join(o.Ciphers, ","))
	}
	if o.ProxyJump != "" {
		line("ProxyJump", false, o.ProxyJump)
	}
	if o.ForwardAgent {
		line("ForwardAgent", false, "yes")
	}
	for _, spec := range o.LocalForwards {
		f, err := ParseForward(spec)
		if err != nil {
			return "", fmt.Errorf("ssh config: LocalForward: %w", err)
		}
		line("LocalForward", false, f.Bind, f.Connect)
	}
	line("LogLevel", false, "ERROR")
	if bad != nil {
		return "", bad
	}
	return b.String(), nil
}

// configValue quotes a value for ssh_config: double quotes when it has spaces, and for file
// names "%" doubled (OpenSSH expands %-tokens in them). Quotes and control characters cannot
// be expressed and are refused.
func configValue(v string, path bool) (string, error) {
	for _, r := range v {
		if r < ' ' || r == 0x7f || r == '"' {
			return "", fmt.Errorf("%s contains a character OpenSSH config cannot hold", strconv.Quote(v))
		}
	}
	if path {
		v = strings.ReplaceAll(v, "%", "%%")
	}
	if strings.ContainsAny(v, " \t#") {
		return `"` + v + `"`, nil
	}
	return v, nil
}

// HostAlias is the name a VM's host key is pinned under and its ssh_config
// Host ("devvm-<name>").
func HostAlias(name string) string { return "devvm-" + name }
