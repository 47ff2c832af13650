package proc

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestRealQEMUPidfile checks the guard against a real QEMU (-machine none, no
// guest): QEMU locks its -pidfile for its lifetime, Capture/Check see it
// Alive, and after SIGKILL the pidfile stays behind unlocked and the identity
// is Gone.
func TestRealQEMUPidfile(t *testing.T) {
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("qemu-system-x86_64 not found and CI=true: %v", err)
		}
		t.Skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
	}
	dir := t.TempDir()
	pidfile := filepath.Join(dir, "qemu.pid")
	marker := fmt.Sprintf("devvm-proctest-%d", time.Now().UnixNano())
	cmd := exec.Command(bin, "-machine", "none", "-display", "none", "-nodefaults",
		"-name", marker, "-pidfile", pidfile)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	reaped := false
	t.Cleanup(func() {
		if !reaped {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	pid := cmd.Process.Pid

	deadline := time.Now().Add(60 * time.Second)
	for {
		holder, err := PidfileLockHolder(pidfile)
		if err != nil {
			t.Fatal(err)
		}
		if holder == pid {
			break
		}
		if holder != 0 {
			t.Fatalf("pidfile locked by pid %d, want QEMU's %d", holder, pid)
		}
		if time.Now().After(deadline) {
			t.Fatal("QEMU did not lock its pidfile within 60s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	id, err := Capture(pid, marker, pidfile)
	if err != nil {
		t.Fatal(err)
	}
	wantState(t, id, Alive, "qemu-system-x86")
	cpu, rss, err := Usage(pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("QEMU usage: %.1f%% CPU, %d KiB RSS", cpu, rss>>10)

	if err := Signal(id, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := WaitGone(ctx, id, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	reaped = true
	wantState(t, id, Gone, "has exited")
	if _, err := os.Stat(pidfile); err != nil {
		t.Errorf("after SIGKILL the pidfile should remain (stale): %v", err)
	}
	if holder, err := PidfileLockHolder(pidfile); holder != 0 || err != nil {
		t.Errorf("stale pidfile lock holder = %d, %v; want 0", holder, err)
	}
}
