package microvm

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/machine"
	"github.com/devvm/devvm/launcher/sshx"
	"github.com/devvm/devvm/launcher/state"
	"github.com/devvm/devvm/launcher/vmfile"
)

// TestMachineIdentityFileOffered: a key the Vmfile names for a machine (its
// owner's, which the VM's config authorizes) is offered with devvm's key in
// the same publickey method (sshx.TestExtraKeysOffered logs in with it).
func TestMachineIdentityFileOffered(t *testing.T) {
	dir := t.TempDir()
	owner, err := sshx.EnsureUserKey(filepath.Join(dir, "owner"))
	if err != nil {
		t.Fatal(err)
	}
	text := "name = \"infra\"\nbackend = \"microvm\"\n\n[microvm.machines.vm1]\naddress = \"127.0.0.1\"\nidentity_file = \"" + owner.PrivatePath + "\"\n"
	os.WriteFile(filepath.Join(dir, "flake.nix"), []byte("{}"), 0o644)
	vf, err := vmfile.Parse(filepath.Join(dir, "Vmfile"), []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	env := hostenv.FromOS()
	env.DataDir, env.StateDir = filepath.Join(dir, "data"), filepath.Join(dir, "state")
	d, err := New(vf, env, &backend.UI{Err: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	m := &machine.Machine{Name: "vm1", VM: state.New(dir, "vm1", env.Dirs())}
	tg, err := d.Target(m, &machine.Record{SSHHost: "127.0.0.1", SSHPort: 2222})
	if err != nil {
		t.Fatal(err)
	}
	if len(tg.ExtraKeys) != 1 || tg.ExtraKeys[0].PrivatePath != owner.PrivatePath {
		t.Errorf("extra keys %+v, want the owner's %s", tg.ExtraKeys, owner.PrivatePath)
	}
}
