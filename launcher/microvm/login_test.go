package microvm

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/devvm/devvm/launcher/sshx"
)

func TestExplainLoginNamesTheKeys(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	key, err := sshx.EnsureUserKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tg := &sshx.Target{User: "robertwendt", Key: key, UseAgent: true}
	other := errors.New("connection refused")
	if got := explainLogin(other, "slot1", tg); got != other {
		t.Errorf("a non-auth error changed: %v", got)
	}
	refused := fmt.Errorf("VM: %w by slot1", sshx.ErrAuthRefused)
	got := explainLogin(refused, "slot1", tg)
	if !errors.Is(got, sshx.ErrAuthRefused) {
		t.Errorf("the refusal is not ErrAuthRefused any more: %v", got)
	}
	for _, want := range []string{`VM "slot1" refused every key devvm offered for user "robertwendt"`, "devvm's key " + key.PublicPath + " (SHA256:",
		"no agent keys (SSH_AUTH_SOCK is not set)", "users.users.robertwendt.openssh.authorizedKeys.keys"} {
		if !strings.Contains(got.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, got)
		}
	}
}
