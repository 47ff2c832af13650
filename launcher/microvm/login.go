package microvm

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/devvm/devvm/launcher/sshx"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// offeredKeys describes the keys a login to t offers, in the order SSH
// offers them: devvm's own key, then the SSH agent's keys.
func offeredKeys(t *sshx.Target) []string {
	var out []string
	if t.Key != nil && t.Key.Signer != nil {
		out = append(out, fmt.Sprintf("devvm's key %s (%s)", t.Key.PublicPath, ssh.FingerprintSHA256(t.Key.Signer.PublicKey())))
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

// explainLogin adds to an SSH refusal by a guest which keys devvm offered and
// how to get one authorized; other errors pass unchanged.
func explainLogin(err error, name string, t *sshx.Target) error {
	if !errors.Is(err, sshx.ErrAuthRefused) {
		return err
	}
	return fmt.Errorf("%w\nVM %q refused every key devvm offered for user %q:\n  %s\nhint: the VM's NixOS configuration authorizes its logins (users.users.%s.openssh.authorizedKeys.keys): load a key it lists into your agent (ssh-add KEY), or add one of the keys above there and redeploy",
		err, name, t.User, strings.Join(offeredKeys(t), "\n  "), t.User)
}

// authorizedAmong returns the descriptions of the keys a login to t offers
// that the authorized_keys lines accept.
func authorizedAmong(authorized []string, t *sshx.Target) []string {
	var fps []string
	for _, line := range authorized {
		if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line)); err == nil {
			fps = append(fps, ssh.FingerprintSHA256(k))
		}
	}
	var matched []string
	for _, d := range offeredKeys(t) {
		for _, fp := range fps {
			if strings.Contains(d, "("+fp+")") || strings.Contains(d, " "+fp+" ") {
				matched = append(matched, d)
			}
		}
	}
	return matched
}
