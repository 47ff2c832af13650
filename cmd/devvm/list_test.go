package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/machine"
	"github.com/devvm/devvm/launcher/proc"
	"github.com/devvm/devvm/launcher/state"
)

// TestPruneKeepsRunningVM: `list --prune` forgets a VM whose checkout is
// gone, but never one whose process still runs, even when its Vmfile does
// not load (a typo is not a gone VM).
func TestPruneKeepsRunningVM(t *testing.T) {
	dir := checkout(t, "name = \"qbuf\"\n")
	env := hostenv.FromOS()
	vm := state.New(dir, "qbuf", env.Dirs())
	if err := vm.Ensure(); err != nil {
		t.Fatal(err)
	}
	qemu := exec.Command("sh", "-c", "sleep 60; :", vm.Marker())
	if err := qemu.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qemu.Process.Kill(); qemu.Wait() })
	var id proc.Identity
	var err error
	for i := 0; i < 100; i++ {
		if id, err = proc.Capture(qemu.Process.Pid, vm.Marker(), ""); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := state.WriteJSON(vm.Record(), machine.Record{Schema: machine.RecordSchema, Backend: "guix", Process: &id}); err != nil {
		t.Fatal(err)
	}
	reg := state.OpenRegistry(env.StateDir)
	gone := filepath.Join(t.TempDir(), "deleted-checkout")
	reg.Add(state.Entry{ID: vm.ID(), Name: "qbuf", Backend: "guix", Checkout: dir, Added: time.Now()})
	reg.Add(state.Entry{ID: "gone", Name: "old", Backend: "guix", Checkout: gone, Added: time.Now()})
	os.WriteFile(filepath.Join(dir, "Vmfile"), []byte("name = \"qbuf\"\nmemroy = \"2G\"\n"), 0o644)

	code, out, errOut := runIn(t, "list", "--prune", "--json")
	if code != 0 {
		t.Fatalf("list --prune: %d %s", code, errOut)
	}
	if !strings.Contains(out, dir) {
		t.Errorf("list --prune forgot a VM whose process runs:\n%s\n%s", out, errOut)
	}
	es, _ := reg.List()
	if len(es) != 1 || es[0].Checkout != dir {
		t.Errorf("registry after --prune: %+v", es)
	}
}
