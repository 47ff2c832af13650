package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devvm/devvm/launcher/vmfile"
)

// TestInitFromFlake: in a flake checkout that declares microvm.nix machines
// (launcher/microvm's four-VM fixture, evaluated by the real nix), `devvm
// init` writes the Vmfile from them; --backend guix still writes a Guix VM.
func TestInitFromFlake(t *testing.T) {
	if _, err := exec.LookPath("nix"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but nix is missing (apt-get install nix-bin)")
		}
		t.Skip("nix is missing")
	}
	t.Setenv("NIX_CONFIG", "store = "+filepath.Join(t.TempDir(), "store"))
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_STATE_HOME", home+"/s")
	dir := filepath.Join(t.TempDir(), "infra")
	if out, err := exec.Command("cp", "-r", "../../launcher/microvm/testdata/seedlike", dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	code, _, errOut := runIn(t, "init", "-C", dir, "--remote", "root@hv.example", "--remote-checkout", "/root/infra")
	if code != 0 {
		t.Fatalf("init in a flake checkout: %d\n%s", code, errOut)
	}
	vf, err := vmfile.Load(dir)
	if err != nil {
		t.Fatalf("the Vmfile init wrote does not load: %v", err)
	}
	if vf.Backend != vmfile.BackendMicroVM || len(vf.MicroVM.Machines) != 5 || vf.MicroVM.Remote == nil || vf.MicroVM.Remote.Checkout != "/root/infra" {
		t.Errorf("init's Vmfile: backend %s, machines %v, remote %+v", vf.Backend, vf.MicroVM.Machines, vf.MicroVM.Remote)
	}
	if _, err := os.Stat(filepath.Join(dir, "dev-vm.scm")); err == nil {
		t.Errorf("init wrote Guix files into a microvm flake checkout")
	}
	if code, _, e := runIn(t, "init", "-C", dir, "--remote", "root@hv.example"); code != 2 || !strings.Contains(e, "--remote-checkout") {
		t.Errorf("--remote without --remote-checkout: %d %q", code, e)
	}
}
