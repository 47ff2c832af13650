package sshx

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// OfferedKeys describes the keys a login to t offers, in the order SSH
// offers them: devvm's own key, more keys (ExtraKeys), then the SSH
// agent's keys.
func OfferedKeys(t *Target) []string {
	var out []string
	if t.Key != nil && t.Key.Signer != nil {
		out = append(out, fmt.Sprintf("devvm's key %s (%s)", t.Key.PublicPath, ssh.FingerprintSHA256(t.Key.Signer.PublicKey())))
	}
	for _, k := range t.ExtraKeys {
		out = append(out, fmt.Sprintf("key %s (%s)", k.PublicPath, ssh.FingerprintSHA256(k.Signer.PublicKey())))
	}
	if t.UseAgent {
		out = append(out, agentKeys()...)
	}
	return out
}

// agentKeys describes the keys of the agent at $SSH_AUTH_SOCK.
func agentKeys() []string {
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return []string{"no agent keys (SSH_AUTH_SOCK is not set)"}
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return []string{fmt.Sprintf("no agent keys (the agent at %s does not answer: %v)", sock, err)}
	}
	defer conn.Close()
	keys, err := agent.NewClient(conn).List()
	if err != nil {
		return []string{fmt.Sprintf("no agent keys (the agent at %s: %v)", sock, err)}
	}
	if len(keys) == 0 {
		return []string{fmt.Sprintf("no agent keys (the agent at %s holds none: ssh-add ~/.ssh/id_ed25519)", sock)}
	}
	var out []string
	for _, k := range keys {
		out = append(out, fmt.Sprintf("agent key %s %s", ssh.FingerprintSHA256(k), k.Comment))
	}
	return out
}
