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
