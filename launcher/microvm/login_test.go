package microvm

import (
	"strings"
	"testing"

	"github.com/devvm/devvm/launcher/sshx"
)

// TestOfferedKeysAndHint: a refused login names each key devvm offered, by
// file and fingerprint, says when there is no agent, and the microvm hint
// points at the NixOS option that authorizes logins.
func TestOfferedKeysAndHint(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	key, err := sshx.EnsureUserKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	hv, err := sshx.EnsureUserKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tg := &sshx.Target{User: "robertwendt", Key: key, ExtraKeys: []*sshx.Key{hv}, UseAgent: true}
	got := strings.Join(sshx.OfferedKeys(tg), "\n")
	for _, want := range []string{"devvm's key " + key.PublicPath + " (SHA256:", "key " + hv.PublicPath + " (SHA256:", "no agent keys (SSH_AUTH_SOCK is not set)"} {
		if !strings.Contains(got, want) {
			t.Errorf("offered keys lack %q:\n%s", want, got)
		}
	}
	if h := (&common{}).LoginHint(nil, "robertwendt"); !strings.Contains(h, "users.users.robertwendt.openssh.authorizedKeys.keys") {
		t.Errorf("hint: %s", h)
	}
}
