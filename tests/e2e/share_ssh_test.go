//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// sshShareWorld is a checkout whose share is served over SSH: the Vmfile
// says mode = "ssh", so devvm's wrapper declares no 9p file-system for it
// (QEMU serves nothing; devvm's share server mounts it after boot).
func sshShareWorld(t *testing.T, name string) *world {
	w := newWorld(t, name)
	w.setVmfile(`memory = "512M"`, `cpus = 1`, `boot_timeout = "10m"`, `mode = "ssh"`)
	return w
}

// sharePID returns the pid `devvm status` names as the server of guest's
// share, or 0 with the status line when it is not served.
func (w *world) sharePID(guest string) (int, string) {
	w.t.Helper()
	shares, _ := w.status()["shares"].([]any)
	for _, sh := range shares {
		m, _ := sh.(map[string]any)
		if m["guest"] != guest {
			continue
		}
		if pid, ok := m["server_pid"].(float64); ok && pid > 0 {
			return int(pid), fmt.Sprintf("share %s: served over SSH by pid %d", guest, int(pid))
		}
		p, _ := m["problem"].(string)
		return 0, "share " + guest + ": " + p
	}
	return 0, ""
}

func gitOK(t *testing.T, dir string, args ...string) {
	t.Helper()
	c := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=devvm test", "-c", "user.email=test@devvm.invalid"}, args...)...)
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// TestSSHShare boots the tiny guest with its checkout served by devvm over
// SSH and checks files both ways, git, symlinks out of the share, status,
// the loss and restoration of the server, and halt.
func TestSSHShare(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("git is not installed on the host")
		}
		t.Skip("git is not installed on the host")
	}
	w := sshShareWorld(t, "sshshare")
	name := vmName(w.checkout)
	guest := "/mnt/" + name

	// A real repository in the checkout, with one modified and one new file.
	repo := filepath.Join(w.checkout, "repo")
	if err := os.MkdirAll(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	gitOK(t, repo, "init", "-q")
	os.WriteFile(filepath.Join(repo, "tracked.txt"), []byte("one\n"), 0o644)
	gitOK(t, repo, "add", "tracked.txt")
	gitOK(t, repo, "commit", "-q", "-m", "first")
	os.WriteFile(filepath.Join(repo, "tracked.txt"), []byte("two\n"), 0o644)
	os.WriteFile(filepath.Join(repo, "new.txt"), []byte("new\n"), 0o644)
	// The repository is the user's, as on a real host (git refuses one owned
	// by someone else).
	filepath.WalkDir(repo, func(p string, _ os.DirEntry, err error) error {
		if err == nil {
			err = os.Lchown(p, guestUID, guestUID)
		}
		return err
	})

	// A file outside the share and symlinks in the share pointing at it.
	outside := filepath.Join(filepath.Dir(w.checkout), "outside")
	os.MkdirAll(outside, 0o755)
	secret := filepath.Join(outside, "secret.txt")
	os.WriteFile(secret, []byte("host secret\n"), 0o644)
	os.Symlink(secret, filepath.Join(w.checkout, "abs-escape"))
	os.Symlink("../outside/secret.txt", filepath.Join(w.checkout, "rel-escape"))
	os.Symlink(outside, filepath.Join(w.checkout, "dir-escape"))

	r := w.ok("up")
	if !strings.Contains(r.stderr, "served over SSH by pid") {
		t.Errorf("up did not report the share server:\n%s", r.stderr)
	}
	argv, _ := os.ReadFile(filepath.Join(w.vmDir(name), "qemu.argv"))
	// (run-vm.sh's own -virtfs shares the store; none may carry the checkout.)
	if strings.Contains(string(argv), "mount_tag=share0") || strings.Contains(string(argv), "path="+w.checkout) ||
		strings.Contains(string(argv), "devvm.9p=") {
		t.Errorf("QEMU got a virtio-9p share for an ssh-mode share:\n%s", argv)
	}
	pid, line := w.sharePID(guest)
	if pid == 0 {
		t.Fatalf("status does not show the share server: %q", line)
	}
	marker := w.vmState(name).Marker() + "-share-"
	if got := processesWith(marker); len(got) != 1 || got[0] != strconv.Itoa(pid) {
		t.Errorf("share server processes %v, status says pid %d", got, pid)
	}
	r = w.ok("ssh", "--", "cat", "/proc/mounts")
	if !regexp.MustCompile(`(?m)^devvm ` + regexp.QuoteMeta(guest) + ` 9p .*trans=fd`).MatchString(r.stdout) {
		t.Fatalf("the guest has no 9p-over-fd mount on %s:\n%s", guest, r.stdout)
	}

	// Host → guest and guest → host.
	os.WriteFile(filepath.Join(w.checkout, "hello.txt"), []byte("from the host\n"), 0o644)
	if r = w.ok("ssh", "--", "cat", guest+"/hello.txt"); r.stdout != "from the host\n" {
		t.Fatalf("guest read %q", r.stdout)
	}
	// The guest writes as root: here devvm, and so its 9P server, runs as
	// root, so what the server creates is root's (on a real host it is the
	// user's, whose uid the guest user has).
	w.ok("ssh", "--", "sudo", "-n", "sh", "-c", "mkdir "+guest+"/made && echo from the guest > "+guest+"/made/back.txt")
	if b, err := os.ReadFile(filepath.Join(w.checkout, "made", "back.txt")); err != nil || string(b) != "from the guest\n" {
		t.Fatalf("host read %q, %v", b, err)
	}

	// The real git in the guest sees the repository's state.
	r = w.ok("ssh", "--", "git", "-C", guest+"/repo", "status", "--porcelain")
	if r.stdout != " M tracked.txt\n?? new.txt\n" {
		t.Errorf("git status in the guest:\n%s\nstderr: %s", r.stdout, r.stderr)
	}

	// Symlinks pointing out of the share never reach the host file.
	for _, l := range []string{"abs-escape", "rel-escape", "dir-escape/secret.txt"} {
		r = w.run("ssh", "--", "cat", guest+"/"+l)
		if r.code == 0 || strings.Contains(r.stdout, "host secret") {
			t.Errorf("reading %s in the guest: exit %d, stdout %q", l, r.code, r.stdout)
		} else if !strings.Contains(r.stderr, "No such file or directory") && !strings.Contains(r.stderr, "Permission denied") {
			t.Errorf("reading %s in the guest failed without ENOENT/EACCES: %s", l, r.stderr)
		}
		w.run("ssh", "--", "sudo", "-n", "sh", "-c", "echo pwned > "+guest+"/"+l)
	}
	if b, _ := os.ReadFile(secret); string(b) != "host secret\n" {
		t.Errorf("the file outside the share changed: %q", b)
	}
	if r = w.ok("ssh", "--", "readlink", guest+"/abs-escape"); strings.TrimSpace(r.stdout) != secret {
		t.Errorf("the guest sees the symlink as %q, want %q", r.stdout, secret)
	}

	// Losing the server (the SSH side): the guest's access fails with an
	// error instead of hanging (bounded by timeout 120 in the guest, which
	// exits 124 or 143 when it has to kill cat), status says the share is
	// down and `up` restores it.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
	r = w.run("ssh", "--", "timeout", "120", "cat", guest+"/hello.txt")
	if r.code == 0 || r.code == 124 || r.code == 143 || r.code == 255 {
		t.Errorf("reading the share after its server died: exit %d, stdout %q, stderr %q; want a prompt I/O error", r.code, r.stdout, r.stderr)
	}
	t.Logf("guest access with the server gone: exit %d: %s", r.code, strings.TrimSpace(r.stderr))
	if p, line := w.sharePID(guest); p != 0 || !strings.Contains(line, "server exited") || !strings.Contains(line, "devvm up") {
		t.Errorf("status with the server dead: %q", line)
	}
	r = w.ok("up")
	if !strings.Contains(r.stderr, "restarting it") {
		t.Errorf("up did not say it restarts the share server:\n%s", r.stderr)
	}
	pid2, line := w.sharePID(guest)
	if pid2 == 0 || pid2 == pid {
		t.Fatalf("status after up: %q (old server pid %d)", line, pid)
	}
	if r = w.ok("ssh", "--", "cat", guest+"/hello.txt"); r.stdout != "from the host\n" {
		t.Fatalf("guest read %q after the share was restored", r.stdout)
	}
	r = w.ok("ssh", "--", "cat", "/proc/mounts")
	if n := strings.Count(r.stdout, " "+guest+" 9p "); n != 1 {
		t.Errorf("%d 9p mounts on %s after the restore, want 1:\n%s", n, guest, r.stdout)
	}

	// A server that stops answering but keeps its connection open (the
	// laptop went to sleep): the guest's sshd gives up on it after its
	// keepalives (the test guest: 3 missed at 5 s intervals), so access
	// fails instead of hanging; woken up, the server finds its connection
	// gone and exits, and `up` restores the share.
	if err := syscall.Kill(pid2, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	r = w.run("ssh", "--", "timeout", "120", "cat", guest+"/hello.txt")
	syscall.Kill(pid2, syscall.SIGCONT)
	if r.code == 0 || r.code == 124 || r.code == 143 || r.code == 255 {
		t.Errorf("reading the share while its server was frozen: exit %d, stdout %q, stderr %q; want an I/O error once the guest's sshd drops the silent client", r.code, r.stdout, r.stderr)
	}
	t.Logf("guest access with the server frozen: exit %d: %s", r.code, strings.TrimSpace(r.stderr))
	waitGone(t, pid2)
	w.ok("up")
	pid3, line := w.sharePID(guest)
	if pid3 == 0 || pid3 == pid2 {
		t.Fatalf("status after up: %q (frozen server pid %d)", line, pid2)
	}
	if r = w.ok("ssh", "--", "cat", guest+"/hello.txt"); r.stdout != "from the host\n" {
		t.Fatalf("guest read %q after the share was restored again", r.stdout)
	}

	// halt stops the server (it unmounts first) and leaves no process.
	w.ok("halt")
	if got := processesWith(marker); len(got) != 0 {
		t.Errorf("share server processes after halt: %v", got)
	}
	if alive(pid3) {
		t.Errorf("share server pid %d alive after halt", pid3)
	}
	log, _ := os.ReadFile(filepath.Join(w.vmDir(name), "share-share0.log"))
	if !strings.Contains(string(log), "unmounting "+guest) {
		t.Errorf("the server's log does not show the unmount on halt:\n%s", log)
	}
}
