package sshx

import (
	"slices"
	"testing"

	"golang.org/x/crypto/ssh"
)

// TestEncodeTarget: the flags carry every part of a target through a jump
// host, and targets they cannot carry are refused.
func TestEncodeTarget(t *testing.T) {
	jump := &Target{Addr: "hv:22", User: "root", Key: &Key{PrivatePath: "/k/hv"}, UseAgent: true, KnownHosts: "/kh/hv"}
	tg := Target{Addr: "10.0.0.2:22", User: "dev", Key: &Key{PrivatePath: "/k/devvm"}, UseAgent: true,
		KnownHosts: "/kh/vm", HostKeyAlias: "devvm-vm1", Jump: jump, ExtraKeys: []*Key{{PrivatePath: "/k/hv"}},
		Ciphers: []string{"chacha20-poly1305@openssh.com", "aes128-ctr"}}
	got, err := EncodeTarget(tg)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"--addr", "10.0.0.2:22", "--user", "dev", "--known-hosts", "/kh/vm", "--key", "/k/devvm",
		"--host-key-alias", "devvm-vm1", "--agent", "--ciphers", "chacha20-poly1305@openssh.com,aes128-ctr", "--extra-key", "/k/hv",
		"--jump-addr", "hv:22", "--jump-user", "root", "--jump-known-hosts", "/kh/hv", "--jump-key", "/k/hv", "--jump-agent"}
	if !slices.Equal(got, want) {
		t.Errorf("EncodeTarget:\n%q\nwant\n%q", got, want)
	}
	tg.Auth = make([]ssh.AuthMethod, 1)
	if _, err := EncodeTarget(tg); err == nil {
		t.Errorf("an authentication method other than keys was accepted")
	}
	tg.Auth = nil
	tg.Jump = &Target{Addr: "hv:22", Jump: jump}
	if _, err := EncodeTarget(tg); err == nil {
		t.Errorf("a jump through another jump was accepted")
	}
}
