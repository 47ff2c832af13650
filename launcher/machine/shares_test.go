package machine

import (
	"context"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/proc"
	"github.com/devvm/devvm/launcher/state"
)

// fakeServer starts a process whose command line carries marker, standing in
// for a `devvm share-serve` process, and returns its identity. It is reaped
// in the background.
func fakeServer(t *testing.T, marker string) (proc.Identity, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command("sh", "-c", "sleep 60; :", marker)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	id, err := proc.Capture(cmd.Process.Pid, marker, "")
	if err != nil {
		t.Fatal(err)
	}
	return id, cmd
}

var testSpecs = []Spec{{Tag: "share0", Host: "/h", Guest: "/mnt/x"}, {Tag: "share1", Host: "/h/data", Guest: "/mnt/data"}}

func TestShareStatus(t *testing.T) {
	v := state.New(t.TempDir(), "x", state.Dirs{})
	id, _ := fakeServer(t, ServerFiles(v, "share0").Marker)
	foreign := id
	foreign.StartTicks++ // the same pid, but not the process devvm started
	recs := []Served{{Tag: "share0", Guest: "/mnt/x", Identity: id}}
	got := strings.Join(ShareStatus(testSpecs, recs), "\n")
	want := "share /mnt/x: served over SSH by pid " + strconv.Itoa(id.PID) + "\nshare /mnt/data: DOWN (no server was started): run `devvm up` to restore"
	if got != want {
		t.Errorf("status lines:\n%s\nwant:\n%s", got, want)
	}
	recs[0].Identity = foreign
	if got := ShareStatus(testSpecs, recs); len(got) != 2 || !strings.HasPrefix(got[0], "share /mnt/x: DOWN (server exited): run `devvm up` to restore") {
		t.Errorf("a server whose pid is now another process is reported as %q", got)
	}
}

// TestStopServersNeedsProof: only a server proven to be ours is signalled.
func TestStopServersNeedsProof(t *testing.T) {
	v := state.New(t.TempDir(), "x", state.Dirs{})
	ui := &backend.UI{Err: io.Discard}
	id, cmd := fakeServer(t, ServerFiles(v, "share0").Marker)
	foreign := id
	foreign.StartTicks++
	StopServers(context.Background(), ui, []Served{{Tag: "share0", Guest: "/mnt/x", Identity: foreign}})
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("StopServers signalled a process it could not prove to be its server: %v", err)
	}
	StopServers(context.Background(), ui, []Served{{Tag: "share0", Guest: "/mnt/x", Identity: id}})
	if v := proc.Check(id); v.State == proc.Alive {
		t.Fatalf("StopServers returned but its server (pid %d) still runs: %v", id.PID, v)
	}
}
