package doctor

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devvm/devvm/launcher/hostenv"
)

func TestDoctor(t *testing.T) {
	env := hostenv.FromOS()
	env.StateDir, env.RuntimeDir = filepath.Join(t.TempDir(), "state"), filepath.Join(t.TempDir(), "rt")
	env.LookPath = func(string) (string, error) { return "", exec.ErrNotFound }
	env.KVMDevice = filepath.Join(t.TempDir(), "no-kvm")
	checks := Run(context.Background(), env, t.TempDir(), nil, os.ErrNotExist)
	byName := map[string]Check{}
	for _, c := range checks {
		byName[c.Name] = c
		if !c.OK && c.Fix == "" {
			t.Errorf("%s fails without a fix hint", c.Name)
		}
	}
	for _, name := range []string{"vmfile", "guix"} {
		if c := byName[name]; c.OK || !c.Required {
			t.Errorf("%s: %+v, want a required failure", name, c)
		}
	}
	if c := byName["kvm"]; c.OK || c.Required || !strings.Contains(c.Detail, "TCG") {
		t.Errorf("kvm: %+v", c)
	}
}

// TestInferiorKey: the cache entry name of Guix 1.5.0's own pin, as
// cached-channel-instance computes it (52 base32 characters).
func TestInferiorKey(t *testing.T) {
	k := InferiorKey([]string{"230aa373f315f247852ee07dff34146e9b480aec"})
	if len(k) != 52 || strings.Trim(k, "abcdefghijklmnopqrstuvwxyz234567") != "" {
		t.Fatalf("key %q", k)
	}
	if k == InferiorKey([]string{"230aa373f315f247852ee07dff34146e9b480aed"}) {
		t.Errorf("keys of different commits collide")
	}
}
