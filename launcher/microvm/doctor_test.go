package microvm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devvm/devvm/launcher/sshx"
	"github.com/devvm/devvm/launcher/vmfile"
)

// TestDoctorLocalFlake runs the local checks on the four-VM fixture: the
// flake's machines, and whether each guest authorizes a key devvm offers.
func TestDoctorLocalFlake(t *testing.T) {
	env := realNix(t)
	env.DataDir = t.TempDir()
	t.Setenv("SSH_AUTH_SOCK", "")
	dir := copyFixture(t, "seedlike")
	key, err := sshx.EnsureUserKey(env.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	// vm2's owner is devvm's key; the others authorize only the fixture's owner key.
	flake := filepath.Join(dir, "flake.nix")
	src, _ := os.ReadFile(flake)
	src = []byte(strings.Replace(string(src), "users.users = {", "users.users = if name == \"vm2\" then { alice = { isNormalUser = true; openssh.authorizedKeys.keys = [ \""+strings.TrimSpace(string(key.AuthorizedLine))+"\" ]; }; } else {", 1))
	os.WriteFile(flake, src, 0o644)
	os.WriteFile(filepath.Join(dir, "Vmfile"), []byte("backend = \"microvm\"\n[ssh]\nuser = \"alice\"\n[microvm.machines.vm1]\naddress = \"127.0.0.1\"\n[microvm.machines.vm2]\naddress = \"127.0.0.1\"\n"), 0o644)
	vf, err := vmfile.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]Check{}
	for _, c := range DoctorChecks(context.Background(), env, vf) {
		t.Logf("%-12s ok=%v req=%v %s | %s", c.Name, c.OK, c.Required, c.Detail, c.Fix)
		m[c.Name] = c
	}
	for _, n := range []string{"nix", "nix flakes", "flake"} {
		if !m[n].OK || !m[n].Required {
			t.Errorf("%s: %+v", n, m[n])
		}
	}
	if c := m["login vm1"]; c.OK || c.Required || !strings.Contains(c.Detail, "authorizes 1 key(s) for alice, none of those devvm offers") || !strings.Contains(c.Fix, "ssh-add") {
		t.Errorf("login vm1: %+v", c)
	}
	if c := m["login vm2"]; !c.OK || !strings.Contains(c.Detail, "devvm's key") {
		t.Errorf("login vm2: %+v", c)
	}
	if c, ok := m["kvm"]; !ok || c.Required {
		t.Errorf("kvm: %+v", c)
	}
}
