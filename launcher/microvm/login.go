package microvm

import (
	"fmt"
	"strings"

	"github.com/devvm/devvm/launcher/machine"
	"github.com/devvm/devvm/launcher/sshx"
	"golang.org/x/crypto/ssh"
)

// LoginHint implements machine.LoginHinter.
func (c *common) LoginHint(m *machine.Machine, user string) string {
	return fmt.Sprintf("the VM's NixOS configuration authorizes its logins (users.users.%s.openssh.authorizedKeys.keys): load a key it lists into your agent (ssh-add KEY), or add one of the keys above there and redeploy", user)
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
	for _, d := range sshx.OfferedKeys(t) {
		for _, fp := range fps {
			if strings.Contains(d, "("+fp+")") || strings.Contains(d, " "+fp+" ") {
				matched = append(matched, d)
			}
		}
	}
	return matched
}
