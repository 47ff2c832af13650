package proc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shirou/gopsutil/v4/process"
	"golang.org/x/sys/unix"
)

const helperEnv = "DEVVM_PROC_TEST_HELPER"

// TestMain turns the test binary into a helper process when helperEnv is
// set: like QEMU it locks its pidfile (if given) and runs until killed or
// until its stdin closes (so it never outlives the test).
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helperMain())
	}
	os.Exit(m.Run())
}

func helperMain() int {
	if path := os.Getenv(helperEnv + "_PIDFILE"); path != "" {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		lk := unix.Flock_t{Type: unix.F_WRLCK}
		if err := unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk); err != nil {
			fmt.Fprintln(os.Stderr, "locking pidfile:", err)
			return 1
		}
		fmt.Fprintf(f, "%d\n", os.Getpid())
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	return 0
}

type helper struct {
	cmd    *exec.Cmd
	pid    int
	marker string
	reaped bool
}

// startHelper runs the helper with marker in its argv and waits until it is
// ready (pidfile locked).
func startHelper(t *testing.T, pidfile string) *helper {
	t.Helper()
	marker := fmt.Sprintf("devvm-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	cmd := exec.Command(os.Args[0], "-name", marker)
	cmd.Env = append(os.Environ(), helperEnv+"=1", helperEnv+"_PIDFILE="+pidfile)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{cmd: cmd, pid: cmd.Process.Pid, marker: marker}
	t.Cleanup(func() {
		stdin.Close()
		if !h.reaped {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("helper process did not start: %q, %v", line, err)
	}
	return h
}

// kill sends SIGKILL; with reap it also waits for the process.
func (h *helper) kill(t *testing.T, reap bool) {
	t.Helper()
	if err := syscall.Kill(h.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if reap {
		h.cmd.Wait()
		h.reaped = true
	}
}

func (h *helper) capture(t *testing.T, pidfile string) Identity {
	t.Helper()
	id, err := Capture(h.pid, h.marker, pidfile)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func wantState(t *testing.T, id Identity, want State, reasonParts ...string) Verdict {
	t.Helper()
	v := Check(id)
	if v.State != want {
		t.Fatalf("Check = %s, want %s", v, want)
	}
	for _, p := range reasonParts {
		if !strings.Contains(v.Reason, p) {
			t.Errorf("reason %q does not contain %q", v.Reason, p)
		}
	}
	t.Logf("verdict: %s", v)
	return v
}

func TestAliveThenKilled(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "qemu.pid")
	h := startHelper(t, pidfile)
	id := h.capture(t, pidfile)

	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if id.PID != h.pid || id.BootID != strings.TrimSpace(string(boot)) || id.Marker != h.marker || id.Pidfile != pidfile {
		t.Errorf("identity = %+v", id)
	}
	if d := time.Since(time.UnixMilli(id.StartTime)); d < 0 || d > time.Hour {
		t.Errorf("start time %v is not the helper's (%v ago)", time.UnixMilli(id.StartTime), d)
	}
	// gopsutil computes CreateTime as btime*1000 + ticks*1000/USER_HZ
	// (USER_HZ is 100 on Linux): check that StartTicks is that field.
	if stat, err := os.ReadFile("/proc/stat"); err == nil {
		var btime int64
		for _, l := range strings.Split(string(stat), "\n") {
			fmt.Sscanf(l, "btime %d", &btime)
		}
		if want := btime*1000 + int64(id.StartTicks)*10; id.StartTime != want {
			t.Errorf("StartTime %d != btime*1000 + StartTicks*10 = %d: wrong /proc/pid/stat field?", id.StartTime, want)
		}
	}
	js, _ := json.Marshal(id)
	for _, key := range []string{`"pid":`, `"start_time":`, `"start_ticks":`, `"boot_id":`, `"marker":`, `"pidfile":`} {
		if !strings.Contains(string(js), key) {
			t.Errorf("JSON %s lacks %s", js, key)
		}
	}
	if holder, err := PidfileLockHolder(pidfile); err != nil || holder != h.pid {
		t.Errorf("PidfileLockHolder = %d, %v; want %d", holder, err, h.pid)
	}
	wantState(t, id, Alive, fmt.Sprint(h.pid))

	h.kill(t, true)
	wantState(t, id, Gone, "has exited")
	// The pidfile stays behind after SIGKILL, but unlocked.
	if _, err := os.Stat(pidfile); err != nil {
		t.Errorf("pidfile: %v", err)
	}
	if holder, err := PidfileLockHolder(pidfile); err != nil || holder != 0 {
		t.Errorf("PidfileLockHolder after kill = %d, %v; want 0", holder, err)
	}
	if err := Signal(id, syscall.SIGTERM); !isNotAlive(err, Gone) {
		t.Errorf("Signal on a dead process: %v, want NotAliveError Gone", err)
	}
}

func isNotAlive(err error, st State) bool {
	var na *NotAliveError
	return errors.As(err, &na) && na.Verdict.State == st
}

func TestZombieIsGone(t *testing.T) {
	h := startHelper(t, "")
	id := h.capture(t, "")
	h.kill(t, false)
	// Wait (without any timing assertion) until the kernel made it a zombie.
	deadline := time.Now().Add(30 * time.Second)
	for {
		p, err := process.NewProcess(int32(h.pid))
		if err != nil {
			t.Fatalf("unreaped child vanished: %v", err)
		}
		if st, _ := p.Status(); len(st) == 1 && st[0] == process.Zombie {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("killed child did not become a zombie within 30s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	wantState(t, id, Gone, "zombie")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := WaitGone(ctx, id, time.Millisecond); err != nil {
		t.Errorf("WaitGone on a zombie: %v", err)
	}
	h.cmd.Wait()
	h.reaped = true
	wantState(t, id, Gone, "has exited")
}

// TestForeign: a live process that does not match the record is never
// signalled, and survives.
func TestForeign(t *testing.T) {
	h := startHelper(t, "")
	id := h.capture(t, "")

	reused := id
	reused.StartTicks -= 150
	reused.StartTime -= 1500
	wantState(t, reused, Foreign, fmt.Sprintf("pid %d is now another process", h.pid), "not touching it")

	// Records without StartTicks compare StartTime (ms) exactly.
	legacy := id
	legacy.StartTicks = 0
	wantState(t, legacy, Alive)
	legacy.StartTime -= 10
	wantState(t, legacy, Foreign, "is now another process")

	otherMarker := id
	otherMarker.Marker = "devvm-someone-else"
	wantState(t, otherMarker, Foreign, "lacks", "not touching it")

	for _, bad := range []Identity{reused, legacy, otherMarker} {
		err := Signal(bad, syscall.SIGKILL)
		if !isNotAlive(err, Foreign) || !strings.Contains(err.Error(), "not sending killed") {
			t.Errorf("Signal(%+v) = %v, want refusal", bad, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := WaitGone(ctx, bad, time.Millisecond); err != nil {
			t.Errorf("WaitGone with a foreign pid: %v", err)
		}
		cancel()
	}
	// The process survived the refused SIGKILLs.
	wantState(t, id, Alive)
}

// TestClockStep: a wall-clock step shifts gopsutil's CreateTime of every
// process (it is btime + ticks, and btime follows the wall clock); the tick
// count since boot does not change, so the VM stays Alive.
func TestClockStep(t *testing.T) {
	h := startHelper(t, "")
	id := h.capture(t, "")
	stepped := id
	stepped.StartTime += 3_600_000 // recorded before a one-hour clock step
	wantState(t, stepped, Alive)
}

func TestRebooted(t *testing.T) {
	h := startHelper(t, "")
	id := h.capture(t, "")

	old := id
	old.BootID = "5f0d6c8e-0000-4000-8000-000000000000"
	wantState(t, old, Gone, "host rebooted")
	if err := Signal(old, syscall.SIGKILL); !isNotAlive(err, Gone) {
		t.Errorf("Signal after reboot: %v", err)
	}

	// The same through the injectable boot id path: the host "reboots".
	fake := filepath.Join(t.TempDir(), "boot_id")
	os.WriteFile(fake, []byte("11111111-2222-4333-8444-555555555555\n"), 0o600)
	saved := bootIDPath
	bootIDPath = fake
	t.Cleanup(func() { bootIDPath = saved })
	wantState(t, id, Gone, "host rebooted")
	id2 := h.capture(t, "")
	if id2.BootID != "11111111-2222-4333-8444-555555555555" {
		t.Errorf("Capture boot id = %q, want the injected one", id2.BootID)
	}
	wantState(t, id2, Alive)

	bootIDPath = filepath.Join(t.TempDir(), "missing")
	wantState(t, id2, Unknown, "boot id")
}

func TestPidfileNotLocked(t *testing.T) {
	dir := t.TempDir()
	pidfile := filepath.Join(dir, "qemu.pid")
	h := startHelper(t, pidfile)
	id := h.capture(t, pidfile)
	wantState(t, id, Alive)

	unlocked := filepath.Join(dir, "other.pid")
	os.WriteFile(unlocked, []byte(fmt.Sprintf("%d\n", h.pid)), 0o600)
	notHeld := id
	notHeld.Pidfile = unlocked
	wantState(t, notHeld, Foreign, "not locked", "not touching it")
	if err := Signal(notHeld, syscall.SIGKILL); !isNotAlive(err, Foreign) {
		t.Errorf("Signal with unlocked pidfile: %v", err)
	}
	missing := id
	missing.Pidfile = filepath.Join(dir, "missing.pid")
	wantState(t, missing, Foreign, "is missing")

	if _, err := Capture(h.pid, h.marker, unlocked); err == nil || !strings.Contains(err.Error(), "not locked") {
		t.Errorf("Capture with an unlocked pidfile: %v", err)
	}
	// Locked by another live process (a second helper).
	h2 := startHelper(t, filepath.Join(dir, "h2.pid"))
	if _, err := Capture(h.pid, h.marker, filepath.Join(dir, "h2.pid")); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("locked by pid %d", h2.pid)) {
		t.Errorf("Capture with another process's pidfile: %v", err)
	}
	wantState(t, id, Alive)
}

func TestSignalAndWaitGone(t *testing.T) {
	h := startHelper(t, "")
	id := h.capture(t, "")

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	err := WaitGone(ctx, id, 5*time.Millisecond)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "alive") {
		t.Errorf("WaitGone on a live process: %v", err)
	}

	if err := Signal(id, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := WaitGone(ctx, id, 5*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	err = h.cmd.Wait()
	h.reaped = true
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Errorf("helper exit: %v, want killed by SIGTERM", err)
	}
}

// TestInvalidIdentity: a zero or negative pid is never signalled (kill(0)
// or kill(-1) would hit the process group or everything).
func TestInvalidIdentity(t *testing.T) {
	boot, _ := readBootID()
	for _, id := range []Identity{
		{PID: 0, StartTime: 1, BootID: boot, Marker: "m"},
		{PID: -1, StartTime: 1, BootID: boot, Marker: "m"},
		{PID: os.Getpid(), BootID: boot}, // no marker
		{},
	} {
		if v := Check(id); v.State != Unknown {
			t.Errorf("Check(%+v) = %s, want unknown", id, v)
		}
		if err := Signal(id, 0); !isNotAlive(err, Unknown) {
			t.Errorf("Signal(%+v) = %v, want refusal", id, err)
		}
	}
}

func TestCaptureErrors(t *testing.T) {
	h := startHelper(t, "")
	cases := []struct {
		pid    int
		marker string
		want   string
	}{
		{h.pid, "", "empty marker"},
		{h.pid, "devvm-not-there", "does not contain the marker"},
		{0, "m", "invalid pid"},
	}
	for _, c := range cases {
		if _, err := Capture(c.pid, c.marker, ""); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Capture(%d, %q) = %v, want error containing %q", c.pid, c.marker, err, c.want)
		}
	}
	marker := h.marker
	h.kill(t, true)
	if _, err := Capture(h.pid, marker, ""); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Errorf("Capture of an exited process: %v", err)
	}
}

func TestPidfileLockHolderMissing(t *testing.T) {
	holder, err := PidfileLockHolder(filepath.Join(t.TempDir(), "nope.pid"))
	if holder != 0 || err != nil {
		t.Errorf("PidfileLockHolder(missing) = %d, %v; want 0, nil", holder, err)
	}
}

func TestUsage(t *testing.T) {
	h := startHelper(t, "")
	cpu, rss, err := Usage(h.pid)
	if err != nil {
		t.Fatal(err)
	}
	if rss < 1<<20 || cpu < 0 {
		t.Errorf("Usage = %.1f%% CPU, %d bytes RSS; want RSS >= 1 MiB (a Go binary)", cpu, rss)
	}
	h.kill(t, true)
	if _, _, err := Usage(h.pid); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Errorf("Usage of an exited process: %v", err)
	}
}

// TestGroupRunning: a live member counts, an exited one that nobody reaped
// yet (a zombie) does not.
func TestGroupRunning(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	defer cmd.Wait()
	if !GroupRunning(pgid) {
		t.Fatalf("group %d with a running sleep reported as gone", pgid)
	}
	cmd.Process.Kill()
	// Not reaped yet: the sleep is a zombie until Wait.
	deadline := time.Now().Add(10 * time.Second)
	for GroupRunning(pgid) {
		if time.Now().After(deadline) {
			t.Fatalf("group %d still reported running 10 s after SIGKILL (its only process is a zombie)", pgid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := syscall.Kill(pgid, 0); err != nil {
		t.Fatalf("the killed sleep was reaped already (%v): the zombie case was not tested", err)
	}
}

// TestExitedIgnoresLostPidfile: a process that lost its pidfile lock (QEMU
// shutting down) is Foreign to Check but has not exited, and is still ours;
// once it exits, Exited says so; a live process without the marker is not ours.
func TestExitedIgnoresLostPidfile(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 30; :", "devvm-marker-x")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	id, err := Capture(cmd.Process.Pid, "devvm-marker-x", "")
	if err != nil {
		t.Fatal(err)
	}
	id.Pidfile = filepath.Join(t.TempDir(), "qemu.pid") // never locked: the lock is gone
	if v := Check(id); v.State != Foreign {
		t.Fatalf("Check with a lost pidfile lock: %v", v)
	}
	if Exited(id) || !Ours(id) {
		t.Fatalf("a running process that lost its pidfile lock: Exited %v, Ours %v", Exited(id), Ours(id))
	}
	other := id
	other.Marker = "devvm-marker-other"
	if Ours(other) {
		t.Errorf("a process without the marker counts as ours")
	}
	cmd.Process.Kill()
	cmd.Wait()
	if !Exited(id) || Ours(id) {
		t.Errorf("after exit: Exited %v, Ours %v", Exited(id), Ours(id))
	}
}
