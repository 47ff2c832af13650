package engine

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/devvm/devvm/launcher/proc"
	"github.com/devvm/devvm/launcher/vmfile"
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

func sshShareGuix(t *testing.T) *Guix {
	env, _ := testEnv(t)
	vf := &vmfile.Vmfile{Name: "x", Dir: t.TempDir(), Shares: []vmfile.Share{
		{Host: ".", Guest: "/mnt/x", Tag: "share0", Mode: vmfile.ShareSSH},
		{Host: "data", Guest: "/mnt/data", Tag: "share1", Mode: vmfile.ShareSSH},
		{Host: "virt", Guest: "/mnt/virt", Tag: "share2", Mode: vmfile.ShareVirtio},
	}}
	return NewGuix(vf, env, quietUI())
}

func TestSSHShareStatus(t *testing.T) {
	g := sshShareGuix(t)
	id, _ := fakeServer(t, g.shareMarker("share0"))
	foreign := id
	foreign.StartTicks++ // the same pid, but not the process devvm started
	rt := &Runtime{Ready: true, SSHShares: []SSHShare{{Tag: "share0", Guest: "/mnt/x", Identity: id}}}
	got := strings.Join(g.sshShareStatus(rt), "\n")
	want := "share /mnt/x: served over SSH by pid " + strconv.Itoa(id.PID) + "\nshare /mnt/data: DOWN (no server was started): run `devvm up` to restore"
	if got != want {
		t.Errorf("status lines:\n%s\nwant:\n%s", got, want)
	}
	rt.SSHShares[0].Identity = foreign
	if got := g.sshShareStatus(rt); len(got) != 2 || !strings.HasPrefix(got[0], "share /mnt/x: DOWN (server exited): run `devvm up` to restore") {
		t.Errorf("a server whose pid is now another process is reported as %q", got)
	}
	rt.Ready = false
	if got := g.sshShareStatus(rt); got != nil {
		t.Errorf("a booting VM reports shares: %q", got)
	}
}

// TestStopSSHSharesNeedsProof: only a server proven to be ours is signalled.
func TestStopSSHSharesNeedsProof(t *testing.T) {
	g := sshShareGuix(t)
	id, cmd := fakeServer(t, g.shareMarker("share0"))
	foreign := id
	foreign.StartTicks++
	g.stopSSHShares(context.Background(), &Runtime{SSHShares: []SSHShare{{Tag: "share0", Guest: "/mnt/x", Identity: foreign}}})
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("stopSSHShares signalled a process it could not prove to be its server: %v", err)
	}
	g.stopSSHShares(context.Background(), &Runtime{SSHShares: []SSHShare{{Tag: "share0", Guest: "/mnt/x", Identity: id}}})
	if v := proc.Check(id); v.State == proc.Alive {
		t.Fatalf("stopSSHShares returned but its server (pid %d) still runs: %v", id.PID, v)
	}
}
