package sshx

import (
	"fmt"
	"strings"
	"time"
)

// A Target crosses a process boundary as command-line flags: devvm starts
// `devvm share-serve` with EncodeTarget's flags, and share-serve rebuilds
// the Target with DecodeTarget. Both directions live here so they cannot
// drift. The flags are --addr, --user, --key, --extra-key (the files of
// Target.ExtraKeys), --agent, --known-hosts, --host-key-alias, --ciphers,
// and the same with a --jump- prefix for Target.Jump.

// TargetFlag names one flag of the codec (without the prefix).
type TargetFlag struct {
	Name  string
	Bool  bool // a switch
	List  bool // repeatable
	Usage string
}

// TargetFlags are the flags of one hop (prefix "" or "jump-"), for the
// command that decodes them to declare.
func TargetFlags(prefix string) []TargetFlag {
	who := "the guest"
	if prefix != "" {
		who = "the jump host"
	}
	fl := []TargetFlag{
		{Name: "addr", Usage: who + "'s sshd, host:port"},
		{Name: "user", Usage: "user on " + who},
		{Name: "key", Usage: "private key file for " + who},
		{Name: "agent", Bool: true, Usage: "offer the keys of the SSH agent at $SSH_AUTH_SOCK to " + who},
		{Name: "known-hosts", Usage: "known_hosts file with " + who + "'s pinned host key"},
		{Name: "host-key-alias", Usage: "name " + who + "'s host key is recorded under"},
		{Name: "ciphers", Usage: "SSH cipher preference for " + who + ", comma-separated"},
	}
	if prefix == "" {
		fl = append(fl, TargetFlag{Name: "extra-key", List: true, Usage: "another private key file to offer the guest (repeatable)"})
	}
	for i := range fl {
		fl[i].Name = prefix + fl[i].Name
	}
	return fl
}

// EncodeTarget returns the flags that rebuild t. Only keys cross a
// process boundary: a target with other authentication methods (Auth) is
// refused.
func EncodeTarget(t Target) ([]string, error) {
	if len(t.Auth) > 0 {
		return nil, fmt.Errorf("the SSH target %s has %d authentication methods besides keys: they cannot be passed on", t.Addr, len(t.Auth))
	}
	args := hopFlags("", t)
	for _, k := range t.ExtraKeys {
		args = append(args, "--extra-key", k.PrivatePath)
	}
	if j := t.Jump; j != nil {
		if len(j.Auth) > 0 || len(j.ExtraKeys) > 0 || j.Jump != nil {
			return nil, fmt.Errorf("the jump host %s of %s needs extra authentication methods or another jump: they cannot be passed on", j.Addr, t.Addr)
		}
		args = append(args, hopFlags("jump-", *j)...)
	}
	return args, nil
}

func hopFlags(prefix string, t Target) []string {
	args := []string{"--" + prefix + "addr", t.Addr, "--" + prefix + "user", t.User, "--" + prefix + "known-hosts", t.KnownHosts}
	if t.Key != nil {
		args = append(args, "--"+prefix+"key", t.Key.PrivatePath)
	}
	if t.HostKeyAlias != "" {
		args = append(args, "--"+prefix+"host-key-alias", t.HostKeyAlias)
	}
	if t.UseAgent {
		args = append(args, "--"+prefix+"agent")
	}
	if len(t.Ciphers) > 0 {
		args = append(args, "--"+prefix+"ciphers", strings.Join(t.Ciphers, ","))
	}
	return args
}

// FlagValues reads decoded flag values (a CLI library's context).
type FlagValues interface {
	String(name string) string
	Bool(name string) bool
	StringSlice(name string) []string
}

// DecodeTarget rebuilds the Target EncodeTarget encoded, with its jump
// host when --jump-addr is set.
func DecodeTarget(v FlagValues) (*Target, error) {
	hop := func(prefix string) (*Target, error) {
		t := &Target{Addr: v.String(prefix + "addr"), User: v.String(prefix + "user"), UseAgent: v.Bool(prefix + "agent"),
			KnownHosts: v.String(prefix + "known-hosts"), HostKeyAlias: v.String(prefix + "host-key-alias"),
			HandshakeTimeout: 30 * time.Second}
		if s := v.String(prefix + "ciphers"); s != "" {
			t.Ciphers = strings.Split(s, ",")
		}
		if t.Addr == "" || t.User == "" || t.KnownHosts == "" {
			return nil, fmt.Errorf("--%saddr, --%suser and --%sknown-hosts are required", prefix, prefix, prefix)
		}
		if p := v.String(prefix + "key"); p != "" {
			k, err := LoadKey(p)
			if err != nil {
				return nil, err
			}
			t.Key = k
		} else if !t.UseAgent {
			return nil, fmt.Errorf("no way to log in to %s: give --%skey or --%sagent", t.Addr, prefix, prefix)
		}
		return t, nil
	}
	t, err := hop("")
	if err != nil {
		return nil, err
	}
	for _, p := range v.StringSlice("extra-key") {
		k, err := LoadKey(p)
		if err != nil {
			return nil, err
		}
		t.ExtraKeys = append(t.ExtraKeys, k)
	}
	if v.String("jump-addr") != "" {
		if t.Jump, err = hop("jump-"); err != nil {
			return nil, err
		}
	}
	return t, nil
}
