package microvm

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/vmfile"
)

// realNix returns an environment whose nix is the real one (Debian nix-bin)
// with a store under a temp dir, or skips (fails with CI=true).
func realNix(t *testing.T) *hostenv.Env {
	t.Helper()
	if _, err := exec.LookPath("nix"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but nix is missing (apt-get install nix-bin)")
		}
		t.Skip("nix is missing (apt-get install nix-bin)")
	}
	// A chroot store: evaluating a path flake copies it into the store.
	t.Setenv("NIX_CONFIG", "store = "+filepath.Join(t.TempDir(), "store"))
	return hostenv.FromOS()
}

// copyFixture copies testdata/NAME to a temp dir (outside any git repository,
// so nix reads it as a path flake).
func copyFixture(t *testing.T, name string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), name)
	if out, err := exec.Command("cp", "-r", filepath.Join("testdata", name), dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	return dst
}

func TestDiscoverMachinesSeedLayout(t *testing.T) {
	env := realNix(t)
	dir := copyFixture(t, "seedlike")
	d, err := DiscoverMachines(context.Background(), env, dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(d.Names(), ","); got != "builder,vm1,vm2,vm3,vm4" {
		t.Fatalf("machines %s", got)
	}
	if got := strings.Join(d.Hosts, ","); got != "hypervisor" {
		t.Errorf("hosts %s", got)
	}
	if !slices.Contains(d.Configs, "hypervisor") || slices.Contains(d.Configs, "builder") {
		t.Errorf("configs %v", d.Configs)
	}
	vm3 := d.Machines[3]
	if vm3.Name != "vm3" || vm3.User != "alice" || len(vm3.Addresses) != 1 || vm3.Addresses[0] != "10.3.0.2" ||
		vm3.Host != "hypervisor" || vm3.UpdateFlake != "git+file:///root/infra" || vm3.Declarative || !vm3.InFlake ||
		vm3.System != "aarch64-linux" || vm3.Hypervisor != "qemu" || vm3.SSHPort != 22 {
		t.Errorf("vm3: %+v", vm3)
	}
	b := d.Machines[0]
	if !b.Declarative || b.InFlake || b.User != "root" || b.Addresses[0] != "10.9.0.2" {
		t.Errorf("builder: %+v", b)
	}

	// init writes the Vmfile from them; devvm loads it back.
	text := RenderVmfile(d.Machines, RenderOptions{Name: "infra", Remote: &vmfile.Remote{Destination: "root@hv.example", Checkout: "/root/infra"}})
	if err := os.WriteFile(filepath.Join(dir, "Vmfile"), text, 0o644); err != nil {
		t.Fatal(err)
	}
	vf, err := vmfile.Load(dir)
	if err != nil {
		t.Fatalf("the written Vmfile does not load: %v\n%s", err, text)
	}
	if vf.SSH.User != "alice" || len(vf.MicroVM.Machines) != 5 || vf.MicroVM.Remote.Checkout != "/root/infra" {
		t.Fatalf("loaded %+v\n%s", vf.MicroVM, text)
	}
	for i := 1; i <= 4; i++ {
		m := vf.MicroVM.Machines["vm"+string(rune('0'+i))]
		if m.Address != "10."+string(rune('0'+i))+".0.2" || m.User != "alice" || m.Port != 22 || m.Config != "vm"+string(rune('0'+i)) {
			t.Errorf("vm%d: %+v", i, m)
		}
	}
	if m := vf.MicroVM.Machines["builder"]; m.User != "root" || m.Address != "10.9.0.2" {
		t.Errorf("builder: %+v", m)
	}
	if !strings.Contains(string(text), "fully declarative: deployed by switching hypervisor") {
		t.Errorf("the Vmfile does not say how builder is deployed:\n%s", text)
	}
	if err := CheckMachines(vf, d.Configs); err != nil {
		// builder is not a nixosConfigurations entry: deployed through its host.
		if !strings.Contains(err.Error(), `"builder"`) || strings.Contains(err.Error(), `"vm1"`) {
			t.Errorf("CheckMachines: %v", err)
		}
	}
}

func TestRenderLocalUsesTheForward(t *testing.T) {
	ms := []Discovered{{Name: "dev", SSHPort: 22, ForwardedSSH: 2222, User: "me", InFlake: true}, {Name: "Other_VM", SSHPort: 22, InFlake: true}}
	text := string(RenderVmfile(ms, RenderOptions{}))
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Vmfile"), []byte(text), 0o644)
	vf, err := vmfile.Load(dir)
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if m := vf.MicroVM.Machines["dev"]; m.Port != 2222 || m.Address != "127.0.0.1" {
		t.Errorf("dev: %+v", m)
	}
	if m, ok := vf.MicroVM.Machines["other_vm"]; !ok || m.Config != "Other_VM" {
		t.Errorf("Other_VM: %+v\n%s", vf.MicroVM.Machines, text)
	}
	if !strings.Contains(text, "no microvm.forwardPorts entry") {
		t.Errorf("no hint for the machine without a forward:\n%s", text)
	}
}

func TestCheckMachinesRenamed(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Vmfile"), []byte("backend = \"microvm\"\n[microvm.machines.vm1]\naddress = \"10.1.0.2\"\n[microvm.machines.vm2]\naddress = \"10.2.0.2\"\nconfig = \"slot2\"\n"), 0o644)
	vf, err := vmfile.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	err = CheckMachines(vf, []string{"hypervisor", "slot1", "slot2"})
	if err == nil || !strings.Contains(err.Error(), `machine "vm1"`) || !strings.Contains(err.Error(), "it has: hypervisor, slot1, slot2") || strings.Contains(err.Error(), "vm2") {
		t.Fatalf("CheckMachines: %v", err)
	}
	if err := CheckMachines(vf, []string{"vm1", "slot2"}); err != nil {
		t.Errorf("CheckMachines: %v", err)
	}
}
