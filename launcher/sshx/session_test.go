package sshx

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

func TestRunExitStatus(t *testing.T) {
	_, _, c := connected(t)
	for _, tc := range []struct {
		cmd  string
		want int
	}{
		{"true", 0},
		{"exit 7", 7},
		{"kill -INT $$", 130},
		{"kill -KILL $$", 137},
		{"kill -USR1 $$", 138},
	} {
		var stdout, stderr bytes.Buffer
		got, err := c.Run(testCtx(t), tc.cmd, nil, &stdout, &stderr, false)
		if err != nil || got != tc.want {
			t.Errorf("Run(%q) = %d, %v; want %d (stderr %q)", tc.cmd, got, err, tc.want, stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if _, err := c.Run(testCtx(t), "echo out; echo err >&2", nil, &stdout, &stderr, false); err != nil {
		t.Fatal(err)
	}
	if stdout.String() != "out\n" || stderr.String() != "err\n" {
		t.Errorf("stdout %q stderr %q", stdout.String(), stderr.String())
	}
}

func TestRunMissingExitStatus(t *testing.T) {
	srv, _, c := connected(t)
	srv.SetOmitExitStatus(true)
	got, err := c.Run(testCtx(t), "exit 3", nil, nil, nil, false)
	if got != 255 || err == nil || !strings.Contains(err.Error(), "without reporting an exit status") {
		t.Errorf("Run = %d, %v; want 255 and an error about the missing exit status", got, err)
	}
}

func TestRunStdinStream(t *testing.T) {
	_, _, c := connected(t)
	data := make([]byte, 10<<20)
	rand.Read(data)
	sum := sha256.Sum256(data)
	var out bytes.Buffer
	// sha256sum only prints once its stdin is closed: this also checks EOF is forwarded.
	st, err := c.Run(testCtx(t), "sha256sum", bytes.NewReader(data), &out, os.Stderr, false)
	if err != nil || st != 0 {
		t.Fatalf("Run = %d, %v", st, err)
	}
	if got := strings.Fields(out.String()); len(got) == 0 || got[0] != hex.EncodeToString(sum[:]) {
		t.Errorf("remote checksum %q, want %x", out.String(), sum)
	}
}

func TestRunTTY(t *testing.T) {
	srv, _, c := connected(t)
	t.Setenv("TERM", "")
	var out bytes.Buffer
	st, err := c.Run(testCtx(t), `test -t 0 && echo "tty $TERM"`, nil, &out, nil, true)
	if err != nil || st != 0 {
		t.Fatalf("Run = %d, %v (%q)", st, err, out.String())
	}
	if !strings.Contains(out.String(), "tty xterm-256color") {
		t.Errorf("output %q, want a tty with TERM=xterm-256color", out.String())
	}
	if p := srv.Ptys(); len(p) != 1 || p[0].Cols != 80 || p[0].Rows != 24 {
		t.Errorf("pty requests %+v, want one 80x24", p)
	}
}

func TestRemoteCommand(t *testing.T) {
	for _, tc := range []struct{ dir, cmd, want string }{
		{"", "", ""},
		{"", "ls", "ls"},
		{"/home/me/my src", "", `cd '/home/me/my src' 2>/dev/null; exec "${SHELL:-/bin/sh}" -l`},
		{"/src", "make test", `cd /src 2>/dev/null; make test`},
	} {
		if got := remoteCommand(tc.dir, tc.cmd); got != tc.want {
			t.Errorf("remoteCommand(%q, %q) = %q, want %q", tc.dir, tc.cmd, got, tc.want)
		}
	}
}

// readUntil reads from f until the accumulated output contains want.
func readUntil(t *testing.T, f *os.File, want string) string {
	t.Helper()
	var got []byte
	buf := make([]byte, 1024)
	for !bytes.Contains(got, []byte(want)) {
		n, err := f.Read(buf)
		if err != nil {
			t.Fatalf("reading terminal output %q while waiting for %q: %v", got, want, err)
		}
		got = append(got, buf[:n]...)
	}
	return string(got)
}

func TestInteractivePty(t *testing.T) {
	srv, _, c := connected(t)
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	defer ptmx.Close()
	defer tty.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 30, Cols: 100}); err != nil {
		t.Fatal(err)
	}
	before, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TERM", "vt220")
	dir := t.TempDir()

	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		st, err := c.Interactive(testCtx(t), InteractiveOptions{
			Dir:     dir,
			Command: `echo "size $(stty size) in $(pwd) term $TERM"; read line; echo "size $(stty size) got $line"; exit 5`,
			Stdin:   tty, Stdout: tty, Stderr: tty,
		})
		done <- result{st, err}
	}()
	readUntil(t, ptmx, "size 30 100 in "+dir+" term vt220")

	// Resize the local terminal and deliver SIGWINCH as the kernel would to the foreground.
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		syscall.Kill(os.Getpid(), syscall.SIGWINCH)
		if w := srv.WindowChanges(); len(w) > 0 && w[len(w)-1] == (struct{ Cols, Rows int }{120, 40}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("window change never reached the server: %+v", srv.WindowChanges())
		}
		time.Sleep(20 * time.Millisecond)
	}
	ptmx.Write([]byte("hello\r"))
	readUntil(t, ptmx, "size 40 120 got hello")
	r := <-done
	if r.err != nil || r.status != 5 {
		t.Errorf("Interactive = %d, %v; want 5", r.status, r.err)
	}
	if p := srv.Ptys(); len(p) != 1 || p[0] != (struct {
		Term       string
		Cols, Rows int
	}{"vt220", 100, 30}) {
		t.Errorf("pty requests %+v, want vt220 100x30", p)
	}
	after, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if *after != *before {
		t.Errorf("terminal not restored: before %+v after %+v", before, after)
	}
}

func TestInteractiveNoTerminal(t *testing.T) {
	srv, _, c := connected(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w.WriteString("echo from-stdin; pwd\n")
	w.Close()
	var out bytes.Buffer
	dir := t.TempDir()
	t.Setenv("SHELL", "/bin/sh")
	st, err := c.Interactive(testCtx(t), InteractiveOptions{Dir: dir, Stdin: r, Stdout: &out, Stderr: &out})
	if err != nil || st != 0 {
		t.Fatalf("Interactive = %d, %v (%q)", st, err, out.String())
	}
	if out.String() != "from-stdin\n"+dir+"\n" {
		t.Errorf("output %q", out.String())
	}
	if p := srv.Ptys(); len(p) != 0 {
		t.Errorf("a pty was requested without a terminal: %+v", p)
	}
	// A missing directory is not an error: the shell starts in the home directory.
	st, err = c.Interactive(testCtx(t), InteractiveOptions{Dir: filepath.Join(dir, "missing"), Command: "exit 3"})
	if err != nil || st != 3 {
		t.Errorf("Interactive in a missing dir = %d, %v; want 3", st, err)
	}
}

func TestShellQuote(t *testing.T) {
	argv := []string{"printf", "%s|", "plain", "", "two words", "it's", `"dq"`, "$HOME", "`x`", "a\nb", "*", "~", "FOO=bar", "-n", "ü"}
	out, err := exec.Command("/bin/sh", "-c", ShellQuote(argv)).Output()
	if err != nil {
		t.Fatalf("sh -c %q: %v", ShellQuote(argv), err)
	}
	want := strings.Join(argv[2:], "|") + "|"
	if string(out) != want {
		t.Errorf("round trip through sh: %q, want %q (quoted %q)", out, want, ShellQuote(argv))
	}
	if got := ShellQuote([]string{"ls", "-l", "/tmp/a.b"}); got != "ls -l /tmp/a.b" {
		t.Errorf("safe words quoted: %q", got)
	}
}

func TestSignalNumber(t *testing.T) {
	for name, want := range map[string]int{"INT": 2, "SIGKILL": 9, "TERM": 15, "usr1": 10} {
		if got, ok := SignalNumber(name); !ok || got != want {
			t.Errorf("SignalNumber(%q) = %d, %v; want %d", name, got, ok, want)
		}
	}
	if _, ok := SignalNumber("NOPE"); ok {
		t.Error("unknown signal name accepted")
	}
}
