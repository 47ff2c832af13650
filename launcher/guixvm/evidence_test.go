package guixvm

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/machine"
	"github.com/devvm/devvm/launcher/qemu"
	"github.com/devvm/devvm/launcher/state"
	"github.com/devvm/devvm/launcher/vmfile"
)

// TestDiskBackingChecked: a persistent disk is booted only when it is the
// qcow2 devvm made over this build's store image; one that names any other
// backing file (a host secret) or is a link is refused, its target untouched.
func TestDiskBackingChecked(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but qemu-img is missing")
		}
		t.Skip("qemu-img is missing")
	}
	base := t.TempDir()
	store := filepath.Join(base, "gnu", "store")
	os.MkdirAll(store, 0o755)
	image := "0123456789abcdfghijklmnpqrsvwxyz-disk-image"
	os.WriteFile(filepath.Join(store, image), make([]byte, 1<<20), 0o444)
	env := hostenv.FromOS()
	env.StateDir, env.RuntimeDir, env.GCRootsDir = filepath.Join(base, "state"), filepath.Join(base, "rt"), ""
	vf := vmfile.Default(filepath.Join(base, "checkout"))
	d := New(vf, env, &backend.UI{Err: io.Discard})
	m := &machine.Machine{Name: "vm", VM: state.New(vf.Dir, "vm", env.Dirs())}
	if err := m.VM.Ensure(); err != nil {
		t.Fatal(err)
	}
	script := &qemu.RunVM{StoreDir: store, Persistent: true, Argv: []string{"qemu", "-drive", "file=/tmp/guix-image-" + image + ",format=qcow2"}}
	disk, err := d.prepareDisk(m, script, "key1")
	if err != nil {
		t.Fatalf("a new disk: %v", err)
	}
	if st, _ := os.Stat(disk); st == nil || st.Mode().Perm() != 0o600 {
		t.Errorf("disk mode: %v", st)
	}
	if _, err := d.prepareDisk(m, script, "key1"); err != nil {
		t.Fatalf("devvm's own disk refused: %v", err)
	}
	secret := filepath.Join(base, "id_ed25519")
	os.WriteFile(secret, []byte("PRIVATE KEY"), 0o600)
	os.Remove(disk)
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-b", secret, "-F", "raw", disk).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v %s", err, out)
	}
	if _, err := d.prepareDisk(m, script, "key1"); err == nil || !strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "refuses") {
		t.Errorf("a disk backed by a host file: %v", err)
	}
	os.Remove(disk)
	os.Symlink(secret, disk)
	if _, err := d.prepareDisk(m, script, "key1"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a linked disk: %v", err)
	}
	if b, _ := os.ReadFile(secret); string(b) != "PRIVATE KEY" {
		t.Fatalf("the link's target changed")
	}
}
