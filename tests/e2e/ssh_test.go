//go:build e2e

package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// TestSSH drives `devvm ssh` and `devvm ssh-config` against one real guest.
func TestSSH(t *testing.T) {
	w := newWorld(t, "sshvm")
	w.setVmfile(`memory = "512M"`, `cpus = 1`)
	w.ok("up")
	name := vmName(w.checkout)

	t.Run("ExitStatus", func(t *testing.T) {
		for cmd, want := range map[string]int{"true": 0, "exit 7": 7, "kill -INT $$": 130} {
			r := w.run("ssh", "--", "sh", "-c", cmd)
			if r.code != want {
				t.Errorf("%q: exit %d, want %d (stderr %q)", cmd, r.code, want, r.stderr)
			}
		}
	})

	t.Run("ArgvQuoting", func(t *testing.T) {
		r := w.ok("ssh", "--", "printf", "%s|", "a b", "c'd", "$HOME", "")
		if r.stdout != "a b|c'd|$HOME||" {
			t.Errorf("arguments reached the guest as %q", r.stdout)
		}
	})

	t.Run("Stdin10MB", func(t *testing.T) {
		data := make([]byte, 10<<20)
		rand.Read(data)
		sum := sha256.Sum256(data)
		r := w.runIn(data, "ssh", "--", "sha256sum")
		if r.code != 0 || !strings.HasPrefix(r.stdout, hex.EncodeToString(sum[:])) {
			t.Errorf("exit %d, guest checksum %q, want %x (stderr %q)", r.code, r.stdout, sum, r.stderr)
		}
	})

	t.Run("Pty", func(t *testing.T) {
		c := w.cmd("ssh")
		ptmx, err := pty.StartWithSize(c, &pty.Winsize{Rows: 30, Cols: 100})
		if err != nil {
			t.Fatal(err)
		}
		defer ptmx.Close()
		out := &syncBuf{}
		go io.Copy(out, ptmx)
		expect := func(want string) {
			t.Helper()
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) {
				if strings.Contains(out.String(), want) {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
			t.Fatalf("never saw %q in the session; got:\n%s", want, out.String())
		}
		io.WriteString(ptmx, "echo marker-$((6*7)); pwd; stty size\r")
		expect("marker-42")
		expect("/mnt/" + name)
		expect("30 100")
		pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 120})
		time.Sleep(300 * time.Millisecond)
		io.WriteString(ptmx, "stty size\r")
		expect("40 120")
		io.WriteString(ptmx, "exit 3\r")
		err = c.Wait()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
			t.Errorf("interactive session ended with %v, want exit status 3", err)
		}
	})

	t.Run("OpenSSHConfig", func(t *testing.T) {
		if _, err := exec.LookPath("ssh"); err != nil {
			needTool(t, "ssh")
		}
		r := w.ok("ssh-config")
		if !strings.Contains(r.stdout, "StrictHostKeyChecking yes") || !strings.Contains(r.stdout, "HostKeyAlias devvm-"+name) {
			t.Errorf("ssh-config:\n%s", r.stdout)
		}
		cfg := filepath.Join(t.TempDir(), "config")
		os.WriteFile(cfg, []byte(r.stdout), 0o600)
		out, err := exec.Command("ssh", "-v", "-F", cfg, "-o", "BatchMode=yes", "devvm-"+name, "echo", "via-openssh").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "via-openssh") {
			t.Fatalf("OpenSSH with the printed config: %v\n%s", err, out)
		}
		// Under TCG the guest has no AES-NI: the config puts chacha20-poly1305 first, and the guest agrees.
		if accel := w.status()["accel"]; accel == "tcg" {
			if !strings.Contains(r.stdout, "Ciphers chacha20-poly1305@openssh.com,") {
				t.Errorf("ssh-config of a TCG VM does not prefer chacha20-poly1305:\n%s", r.stdout)
			}
			if !strings.Contains(string(out), "cipher: chacha20-poly1305@openssh.com") {
				t.Errorf("OpenSSH did not negotiate chacha20-poly1305 with the TCG guest:\n%s", out)
			}
		}
		// The file `up` wrote is the same stanza.
		written, _ := os.ReadFile(filepath.Join(w.vmDir(name), "ssh_config"))
		if string(written) != r.stdout {
			t.Errorf("the ssh_config of %s differs from `devvm ssh-config`", name)
		}
	})

	t.Run("ForgedHostKeyRefused", func(t *testing.T) {
		kh := filepath.Join(w.vmDir(name), "known_hosts")
		orig, err := os.ReadFile(kh)
		if err != nil {
			t.Fatal(err)
		}
		defer os.WriteFile(kh, orig, 0o600)
		forged := filepath.Join(t.TempDir(), "k")
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", forged).CombinedOutput(); err != nil {
			needTool(t, "ssh-keygen: "+string(out))
		}
		pub, _ := os.ReadFile(forged + ".pub")
		fields := strings.Fields(string(pub))
		os.WriteFile(kh, []byte("devvm-"+name+" "+fields[0]+" "+fields[1]+"\n"), 0o600)
		r := w.run("ssh", "--", "echo", "must-not-run")
		if r.code == 0 || strings.Contains(r.stdout, "must-not-run") || !strings.Contains(strings.ToLower(r.stderr), "host key") {
			t.Errorf("a forged pinned key was not refused: exit %d\nstdout %q\nstderr %q", r.code, r.stdout, r.stderr)
		}
		if cfg := w.ok("ssh-config").stdout; cfg != "" {
			p := filepath.Join(t.TempDir(), "config")
			os.WriteFile(p, []byte(cfg), 0o600)
			if out, err := exec.Command("ssh", "-F", p, "-o", "BatchMode=yes", "devvm-"+name, "true").CombinedOutput(); err == nil {
				t.Errorf("OpenSSH accepted a forged pinned key:\n%s", out)
			}
		}
	})

	t.Run("LocalForward", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		// 127.0.0.1: the tiny guest has no /etc/hosts to resolve localhost.
		c := w.cmd("ssh", "-L", fmt.Sprintf("%d:127.0.0.1:22", port), "--", "sleep", "20")
		var stderr syncBuf
		c.Stderr = &stderr
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { c.Process.Kill(); c.Wait() }()
		var banner string
		for end := time.Now().Add(15 * time.Second); time.Now().Before(end) && banner == ""; time.Sleep(100 * time.Millisecond) {
			conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
			if err != nil {
				continue
			}
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			b := make([]byte, 64)
			n, _ := conn.Read(b)
			banner = string(b[:n])
			conn.Close()
		}
		if !strings.HasPrefix(banner, "SSH-2.0-") {
			t.Errorf("-L did not carry the guest's sshd banner through; got %q (devvm: %s)", banner, stderr.String())
		}
	})

	t.Run("Logs", func(t *testing.T) {
		r := w.ok("logs", "-n", "3")
		if n := strings.Count(strings.TrimRight(r.stdout, "\n"), "\n") + 1; n != 3 {
			t.Errorf("logs -n 3 printed %d lines:\n%s", n, r.stdout)
		}
		if all := w.ok("logs").stdout; !strings.Contains(all, "devvm-guest: ready") {
			t.Errorf("the console log lacks the guest's boot messages:\n%s", all)
		}
		// -f follows new output: make the guest write to its console.
		c := w.cmd("logs", "-f", "-n", "1")
		out := &syncBuf{}
		c.Stdout = out
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { c.Process.Kill(); c.Wait() }()
		time.Sleep(500 * time.Millisecond)
		// /dev/console is root's (the login user is not, as on Guix).
		w.ok("ssh", "--", "sudo", "-n", "sh", "-c", "echo followed-line > /dev/console")
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && !strings.Contains(out.String(), "followed-line"); {
			time.Sleep(100 * time.Millisecond)
		}
		if !strings.Contains(out.String(), "followed-line") {
			t.Errorf("logs -f did not show new console output: %q", out.String())
		}
	})

	t.Run("Console", func(t *testing.T) {
		c := w.cmd("console")
		ptmx, err := pty.Start(c)
		if err != nil {
			t.Fatal(err)
		}
		defer ptmx.Close()
		out := &syncBuf{}
		go io.Copy(out, ptmx)
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && !strings.Contains(out.String(), "Ctrl-] detaches"); {
			time.Sleep(50 * time.Millisecond)
		}
		w.ok("ssh", "--", "sudo", "-n", "sh", "-c", "echo through-the-console > /dev/console")
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && !strings.Contains(out.String(), "through-the-console"); {
			time.Sleep(50 * time.Millisecond)
		}
		if !strings.Contains(out.String(), "through-the-console") {
			t.Errorf("console did not show the guest's output: %q", out.String())
		}
		ptmx.Write([]byte{0x1d}) // Ctrl-]
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("console after Ctrl-]: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Ctrl-] did not detach")
		}
	})

	t.Run("StoppedVM", func(t *testing.T) {
		w.ok("halt")
		r := w.run("ssh", "--", "true")
		if r.code == 0 || !strings.Contains(r.stderr, "devvm up") {
			t.Errorf("ssh on a stopped VM: exit %d, %q", r.code, r.stderr)
		}
	})
}

func needTool(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("missing in CI: %s", what)
	}
	t.Skip("missing: " + what)
}

// syncBuf is a bytes.Buffer safe for one writer and one reader.
type syncBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
