//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/devvm/devvm/launcher/vmfile"
)

// vmName is what `devvm init` names the VM of a checkout directory.
func vmName(dir string) string { return vmfile.SanitizeName(filepath.Base(dir)) }

// TestLifecycle walks the whole life of a VM whose checkout path has a
// space and a comma: up, shares both ways, re-up, graceful halt, up from
// cache, kill -9, status, destroy.
func TestLifecycle(t *testing.T) {
	w := newWorld(t, "my proj, v2")
	w.setVmfile(`memory = "512M"`, `cpus = 1`, `boot_timeout = "10m"`)
	name := vmName(w.checkout)
	guest := "/mnt/" + name

	r := w.ok("up")
	if !strings.Contains(r.stderr, "running under TCG") && !strings.Contains(r.stderr, "(kvm)") {
		t.Errorf("up did not say which accelerator it chose:\n%s", r.stderr)
	}
	if w.guixRuns() != 1 {
		t.Fatalf("guix ran %d times for the first up, want 1", w.guixRuns())
	}
	st := w.status()
	if st["state"] != "running" {
		t.Fatalf("status after up: %v", st)
	}
	pid := int(st["pid"].(float64))
	argv, _ := os.ReadFile(filepath.Join(w.vmDir(name), "qemu.argv"))
	if strings.Contains(string(argv), "-enable-kvm") && st["accel"] == "tcg" {
		t.Errorf("QEMU got -enable-kvm although KVM is unusable:\n%s", argv)
	}

	// Host → guest through the 9p share (path with a space and a comma).
	if err := os.WriteFile(filepath.Join(w.checkout, "hello.txt"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = w.ok("ssh", "--", "cat", guest+"/hello.txt")
	if r.stdout != "from the host\n" {
		t.Fatalf("guest read %q from the share", r.stdout)
	}
	// Guest → host.
	w.ok("ssh", "--", "sh", "-c", "echo from the guest > "+guest+"/back.txt")
	if b, err := os.ReadFile(filepath.Join(w.checkout, "back.txt")); err != nil || string(b) != "from the guest\n" {
		t.Fatalf("host read %q, %v", b, err)
	}

	// up again: no rebuild, no second QEMU.
	r = w.ok("up")
	if !strings.Contains(r.stderr, "already running") {
		t.Errorf("second up did not say the VM runs:\n%s", r.stderr)
	}
	if w.guixRuns() != 1 {
		t.Errorf("second up ran guix")
	}
	if got := processesWith(w.marker(name)); len(got) != 1 {
		t.Errorf("QEMU processes of this VM: %v, want exactly 1", got)
	}
	if p := int(w.status()["pid"].(float64)); p != pid {
		t.Errorf("pid changed from %d to %d", pid, p)
	}

	// Changed inputs: the running VM is outdated until `devvm reload`.
	cfg := filepath.Join(w.checkout, "dev-vm.scm")
	orig, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, append(append([]byte(nil), orig...), []byte("\n;; edited\n")...), 0o644)
	if st := w.status(); st["outdated"] != true || !strings.Contains(st["hint"].(string), "devvm reload") {
		t.Errorf("status after editing dev-vm.scm: %v", st)
	}
	if r := w.ok("up"); !strings.Contains(r.stderr, "outdated") {
		t.Errorf("up on an outdated VM did not say so:\n%s", r.stderr)
	}
	os.WriteFile(cfg, orig, 0o644)
	if st := w.status(); st["outdated"] != false {
		t.Errorf("status after restoring dev-vm.scm: %v", st)
	}

	// Graceful halt on the Guix-like guest: no poweroff, so `sudo -n halt`
	// (Shepherd's, which powers off) over SSH.
	w.cleanHalt()
	if alive(pid) {
		t.Fatalf("QEMU pid %d still alive after halt", pid)
	}
	if st := w.status(); st["state"] != "stopped" {
		t.Fatalf("status after halt: %v", st)
	}

	// up from the cache: no guix run.
	w.ok("up")
	if w.guixRuns() != 1 {
		t.Errorf("up after halt ran guix (%d runs)", w.guixRuns())
	}
	st = w.status()
	pid = int(st["pid"].(float64))

	// kill -9: status notices, cleans the stale record, signals nothing.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
	st = w.status()
	if st["state"] != "stopped" || !strings.Contains(st["reason"].(string), "stale") {
		t.Fatalf("status after kill -9: %v", st)
	}

	// destroy: no process, no state.
	w.ok("up")
	marker := w.marker(name)
	r = w.ok("destroy", "-f", "--yes", "--gc")
	if !strings.Contains(r.stderr, "garbage collection freed") {
		t.Errorf("destroy --gc did not report the space freed:\n%s", r.stderr)
	}
	if got := processesWith(marker); len(got) != 0 {
		t.Errorf("processes of the VM after destroy: %v", got)
	}
	if _, err := os.Stat(w.vmDir(name)); !os.IsNotExist(err) {
		t.Errorf("the state of %s still exists after destroy (%v)", name, err)
	}
	r = w.ok("list", "--json")
	if strings.Contains(r.stdout, w.checkout) {
		t.Errorf("list still shows the destroyed VM:\n%s", r.stdout)
	}
}

// cleanHalt runs `devvm halt` and checks it was a clean power-off over SSH:
// devvm says so, never fell back to the ACPI button or SIGTERM, and the
// guest ran its shutdown path (its console says so) before QEMU exited.
func (w *world) cleanHalt() {
	w.t.Helper()
	r := w.ok("halt")
	if !strings.Contains(r.stderr, "powered off over SSH") || strings.Contains(r.stderr, "SIGTERM") ||
		strings.Contains(r.stderr, "failed") || strings.Contains(r.stderr, "did not power off") {
		w.t.Errorf("halt was not a clean power-off over SSH:\n%s", r.stderr)
	}
	console, err := os.ReadFile(filepath.Join(w.vmDir(vmName(w.checkout)), "console.log"))
	if err != nil || !strings.Contains(string(console), "devvm-guest: shutting down") {
		w.t.Errorf("the guest's console shows no shutdown (%v):\n%s", err, console)
	}
}

func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	for i := 0; i < 100 && alive(pid); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if alive(pid) {
		t.Fatalf("pid %d did not exit", pid)
	}
}

// TestHungGuestHaltEscalates: a guest that ignores poweroff and the ACPI
// button is stopped by SIGTERM within the halt bound.
func TestHungGuestHaltEscalates(t *testing.T) {
	w := newWorld(t, "hung", "DEVVM_STANDIN_APPEND=devvm.test=hang")
	w.setVmfile(`memory = "512M"`, `cpus = 1`)
	w.ok("up")
	pid := int(w.status()["pid"].(float64))
	r := w.ok("halt", "--timeout", "12s")
	if !strings.Contains(r.stderr, "SIGTERM") && !strings.Contains(r.stderr, "killed") {
		t.Errorf("halt of a hung guest did not escalate:\n%s", r.stderr)
	}
	if alive(pid) {
		t.Fatalf("hung guest's QEMU %d survived halt", pid)
	}
}

// TestConcurrentUp: a second `up` while one runs fails at once.
func TestConcurrentUp(t *testing.T) {
	w := newWorld(t, "concurrent", "DEVVM_STANDIN_DELAY=3")
	w.setVmfile(`memory = "512M"`, `cpus = 1`)
	var wg sync.WaitGroup
	results := make([]result, 2)
	for i := range results {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if i == 1 {
				time.Sleep(700 * time.Millisecond)
			}
			results[i] = w.run("up")
		}(i)
	}
	wg.Wait()
	if results[0].code != 0 {
		t.Fatalf("first up failed: %s", results[0].stderr)
	}
	if results[1].code == 0 || !strings.Contains(results[1].stderr, "in use by") {
		t.Fatalf("second concurrent up: exit %d\n%s", results[1].code, results[1].stderr)
	}
	if results[1].took > 5*time.Second {
		t.Errorf("second up took %s to fail; it must fail at once", results[1].took)
	}
	if got := processesWith(w.marker(vmName(w.checkout))); len(got) != 1 {
		t.Errorf("QEMU processes of this VM: %v, want 1", got)
	}

	// The user-wide list shows it, from any directory; a VM whose
	// checkout is gone is pruned.
	var list struct{ Machines []map[string]any }
	r := w.ok("--dir", "/", "list", "--json")
	if json.Unmarshal([]byte(r.stdout), &list) != nil || len(list.Machines) != 1 || list.Machines[0]["state"] != "running" || list.Machines[0]["checkout"] != w.checkout {
		t.Errorf("list --json: %s", r.stdout)
	}
	w.ok("halt", "-f")
	os.RemoveAll(w.checkout)
	os.MkdirAll(w.checkout, 0o755) // the harness runs devvm there
	r = w.ok("list", "--prune")
	if !strings.Contains(r.stderr, "pruned") {
		t.Errorf("list --prune did not drop the gone checkout:\n%s%s", r.stdout, r.stderr)
	}
	if r = w.ok("list", "--json"); !strings.Contains(r.stdout, `"machines": []`) {
		t.Errorf("list after prune: %s", r.stdout)
	}
}

// TestPinnedPortBusy: a pinned SSH port that is taken fails before QEMU
// starts and names the owner.
func TestPinnedPortBusy(t *testing.T) {
	w := newWorld(t, "pinned")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	w.setVmfile("port = " + strconv.Itoa(port))
	r := w.run("up")
	if r.code == 0 {
		t.Fatal("up succeeded on a busy pinned port")
	}
	if !strings.Contains(r.stderr, "in use") || !strings.Contains(r.stderr, "pid "+strconv.Itoa(os.Getpid())) {
		t.Errorf("error does not name the busy port's owner:\n%s", r.stderr)
	}
	if got := processesWith(w.marker(vmName(w.checkout))); len(got) != 0 {
		t.Errorf("QEMU was started: %v", got)
	}
}

// TestStaleRecordUnrelatedProcess: a runtime record whose pid now belongs
// to an unrelated live process is cleaned, and that process survives
// status, halt and destroy.
func TestStaleRecordUnrelatedProcess(t *testing.T) {
	w := newWorld(t, "stale")
	name := vmName(w.checkout)
	victim := exec.Command("sleep", "300")
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	defer victim.Process.Kill()
	dir := w.vmDir(name)
	os.MkdirAll(dir, 0o700)
	pidfile := filepath.Join(dir, "qemu.pid")
	os.WriteFile(pidfile, []byte(strconv.Itoa(victim.Process.Pid)+"\n"), 0o644)
	// A record naming a live process that is not this VM's QEMU (its real
	// start time, even): devvm derives the marker and pidfile itself.
	ticks := startTicks(t, victim.Process.Pid)
	rec := `{"schema":1,"backend":"guix","process":{"pid":` + strconv.Itoa(victim.Process.Pid) + `,"start_ticks":` + ticks + `,"boot_id":"` + bootID() +
		`","marker":"sleep","pidfile":""},"accel":"tcg","ssh_host":"127.0.0.1","ssh_port":10022,"ready":true}`
	os.WriteFile(filepath.Join(dir, "record.json"), []byte(rec), 0o600)

	st := w.status()
	if st["state"] != "stopped" {
		t.Errorf("status with a stale record: %v", st)
	}
	os.WriteFile(filepath.Join(dir, "record.json"), []byte(rec), 0o600)
	w.ok("halt")
	os.WriteFile(filepath.Join(dir, "record.json"), []byte(rec), 0o600)
	w.ok("destroy", "-f", "--yes")
	if err := victim.Process.Signal(syscall.Signal(0)); err != nil || !alive(victim.Process.Pid) {
		t.Fatalf("the unrelated process was signalled: %v", err)
	}
}

// startTicks is field 22 of /proc/PID/stat.
func startTicks(t *testing.T, pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return f[19]
}

func bootID() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
}

// TestForeground: `up --foreground` puts the serial console on this
// terminal; Ctrl-C reaches the guest, not QEMU; the VM is usable from other
// commands; Ctrl-a x ends QEMU and the command, and the record is cleaned.
func TestForeground(t *testing.T) {
	w := newWorld(t, "fg")
	w.setVmfile(`memory = "512M"`, `cpus = 1`)
	w.ok("build")
	c := w.cmd("up", "--foreground")
	ptmx, err := pty.StartWithSize(c, &pty.Winsize{Rows: 24, Cols: 80})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	out := &syncBuf{}
	go io.Copy(out, ptmx)
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for end := time.Now().Add(3 * time.Minute); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			if cond() {
				return
			}
		}
		t.Fatalf("timed out waiting for %s; terminal:\n%s", what, out.String())
	}
	waitFor("the guest's console", func() bool { return strings.Contains(out.String(), "devvm-guest: ready") })
	waitFor("SSH", func() bool { return w.run("ssh", "--", "true").code == 0 })
	pid := int(w.status()["pid"].(float64))
	ptmx.Write([]byte{3}) // Ctrl-C
	time.Sleep(time.Second)
	if !alive(pid) {
		t.Fatal("Ctrl-C killed the foreground VM")
	}
	ptmx.Write([]byte{1, 'x'}) // Ctrl-a x
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("devvm did not end after Ctrl-a x; terminal:\n%s", out.String())
	}
	waitGone(t, pid)
	if st := w.status(); st["state"] != "stopped" {
		t.Errorf("status after the foreground VM ended: %v", st)
	}
}

// TestPersistent: with persistent = true the guest's disk writes go to a
// devvm-owned qcow2 overlay in its state directory (not guix's shared /tmp file),
// survive halt/up, leave the store image untouched, and go with destroy.
func TestPersistent(t *testing.T) {
	w := newWorld(t, "persist")
	w.setVmfile(`memory = "512M"`, `cpus = 1`, `persistent = true`)
	w.ok("up")
	name := vmName(w.checkout)
	disks, _ := filepath.Glob(filepath.Join(w.vmDir(name), "disk-*.qcow2"))
	if len(disks) != 1 {
		t.Fatalf("persistent disks: %v", disks)
	}
	argv, _ := os.ReadFile(filepath.Join(w.vmDir(name), "qemu.argv"))
	if !strings.Contains(string(argv), "file="+disks[0]+",format=qcow2") || strings.Contains(string(argv), "/tmp/guix-image-") {
		t.Fatalf("QEMU does not use devvm's overlay:\n%s", argv)
	}
	info, err := exec.Command("qemu-img", "info", "-U", "--output=json", disks[0]).Output()
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		Backing string `json:"full-backing-filename"`
	}
	json.Unmarshal(info, &meta)
	backingBefore, err := os.ReadFile(meta.Backing)
	if err != nil {
		t.Fatalf("backing image %q: %v", meta.Backing, err)
	}

	w.ok("ssh", "--", "sudo", "-n", "sh", "-c", "printf devvm-persist | dd of=/dev/vda bs=512 seek=8 conv=notrunc 2>/dev/null && sync")
	w.ok("halt")
	w.ok("up")
	r := w.ok("ssh", "--", "sudo", "-n", "sh", "-c", "dd if=/dev/vda bs=512 skip=8 count=1 2>/dev/null | head -c 13")
	if r.stdout != "devvm-persist" {
		t.Errorf("the guest's write did not survive halt/up: read %q", r.stdout)
	}
	if after, _ := os.ReadFile(meta.Backing); string(after) != string(backingBefore) {
		t.Error("the store image was modified")
	}
	if leaked, _ := filepath.Glob("/tmp/guix-image-" + filepath.Base(meta.Backing)); len(leaked) != 0 {
		t.Errorf("guix's shared /tmp overlay was created: %v", leaked)
	}
	w.ok("destroy", "-f", "--yes")
	if _, err := os.Stat(disks[0]); !os.IsNotExist(err) {
		t.Errorf("destroy left the persistent disk: %v", err)
	}
}
