package share

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/devvm/devvm/launcher/sshx/sshtest"
	"github.com/hugelgupf/p9/p9"
	"golang.org/x/crypto/ssh"
)

// startSSH starts the in-process test SSH server (it implements
// "tcpip-forward" on loopback, like sshd in the guest) and connects to it with
// a strict host key check.
func startSSH(t *testing.T) (*sshtest.Server, *ssh.Client) {
	t.Helper()
	key := sshtest.NewKey(t)
	s := sshtest.Start(t, sshtest.Options{Authorized: []ssh.PublicKey{key.PublicKey()}})
	c, err := ssh.Dial("tcp", s.Addr, &ssh.ClientConfig{
		User:            "dev",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: ssh.FixedHostKey(s.HostKey.PublicKey()),
		Timeout:         10 * time.Second,
	})
	if err != nil {
		t.Fatalf("ssh dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return s, c
}

// waitDone fails the test instead of hanging forever if Wait never returns.
func waitDone(t *testing.T, srv *Server) error {
	t.Helper()
	ch := make(chan error, 1)
	go func() { ch <- srv.Wait() }()
	select {
	case err := <-ch:
		return err
	case <-time.After(2 * time.Minute):
		t.Fatal("Server.Wait did not return")
		return nil
	}
}

// readVia9P reads name over conn and leaves the client open.
func readVia9P(t *testing.T, conn net.Conn, name string) string {
	t.Helper()
	cl, err := p9.NewClient(conn, p9.WithMessageSize(64<<10))
	if err != nil {
		t.Fatalf("p9 client over the forwarded port: %v", err)
	}
	t.Cleanup(func() { cl.Close() })
	root, err := cl.Attach("")
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	_, f, err := root.Walk([]string{name})
	if err != nil {
		t.Fatalf("walk: %v", err)
	}
	if _, _, err := f.Open(p9.ReadOnly); err != nil {
		t.Fatalf("open: %v", err)
	}
	buf := make([]byte, 256)
	n, err := f.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		t.Fatalf("read: %v", err)
	}
	return string(buf[:n])
}

func TestServeOverSSH(t *testing.T) {
	l := newLayout(t)
	writeFile(t, filepath.Join(l.root, "README"), "hello from the host")
	s, client := startSSH(t)

	srv, err := ServeOverSSH(context.Background(), client, l.root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if len(srv.Nonce()) != 2*nonceBytes || srv.Port() == 0 {
		t.Fatalf("nonce %q port %d", srv.Nonce(), srv.Port())
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(srv.Port()))

	// A connection with a wrong nonce is closed without being served.
	bad, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	bad.Write([]byte(strings.Repeat("0", len(srv.Nonce()))))
	if _, err := bad.Read(make([]byte, 1)); err == nil {
		t.Fatal("a connection with a wrong nonce got data back")
	}
	bad.Close()

	// The real one: nonce first, then 9P on the same connection.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte(srv.Nonce())); err != nil {
		t.Fatal(err)
	}
	if got := readVia9P(t, conn, "README"); got != "hello from the host" {
		t.Fatalf("read %q over the forwarded 9P connection", got)
	}

	// The listener is gone once the share is mounted: a second
	// connection, even with the nonce, is not served.
	if c2, err := net.Dial("tcp", addr); err == nil {
		c2.Write([]byte(srv.Nonce()))
		if _, err := p9.NewClient(c2, p9.WithMessageSize(8192)); err == nil {
			t.Fatal("a second connection was served")
		}
		c2.Close()
	}

	// Dropping the SSH connection ends serving, while the 9P client on
	// the guest side still holds its connection open.
	s.Close()
	if err := waitDone(t, srv); err != nil {
		t.Fatalf("Wait after the SSH connection dropped: %v", err)
	}
	l.checkOutside(t)
}

func TestServeOverSSHGivesUpAfterBadNonces(t *testing.T) {
	l := newLayout(t)
	_, client := startSSH(t)
	srv, err := ServeOverSSH(context.Background(), client, l.root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(srv.Port()))
	for range maxBadConns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break // listener already closed
		}
		c.Write([]byte(strings.Repeat("x", len(srv.Nonce()))))
		c.Read(make([]byte, 1)) // wait until the server closes it
		c.Close()
	}
	err = waitDone(t, srv)
	if err == nil || !strings.Contains(err.Error(), "did not present the nonce") {
		t.Fatalf("Wait = %v, want the too-many-bad-connections error", err)
	}
}

func TestServeOverSSHContextCancel(t *testing.T) {
	l := newLayout(t)
	_, client := startSSH(t)
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := ServeOverSSH(ctx, client, l.root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := waitDone(t, srv); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want context.Canceled", err)
	}
	srv.Close()
}

// The fake mount(8) used by TestMountCommand: it runs this test binary with
// fakeMountEnv set, which takes the fd named by rfdno/wfdno (as the kernel's
// trans=fd does) and speaks 9P on it.
const fakeMountEnv = "DEVVM_SHARE_FAKE_MOUNT"

func TestMain(m *testing.M) {
	if os.Getenv(fakeMountEnv) != "" {
		if err := fakeMount(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "fake mount:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fakeMount checks "mount -t 9p -o OPTS SOURCE TARGET" and reads the file
// named by $DEVVM_SHARE_FAKE_MOUNT through the fd given in the options.
func fakeMount(args []string) error {
	if len(args) != 6 || args[0] != "-t" || args[1] != "9p" || args[2] != "-o" {
		return fmt.Errorf("unexpected arguments %q", args)
	}
	opts := map[string]string{}
	for _, o := range strings.Split(args[3], ",") {
		k, v, _ := strings.Cut(o, "=")
		opts[k] = v
	}
	if opts["trans"] != "fd" || opts["version"] != "9p2000.L" || opts["rfdno"] != opts["wfdno"] {
		return fmt.Errorf("unexpected options %q", args[3])
	}
	if fi, err := os.Stat(args[5]); err != nil || !fi.IsDir() {
		return fmt.Errorf("mount point %s: %v", args[5], err)
	}
	fd, err := strconv.Atoi(opts["rfdno"])
	if err != nil {
		return err
	}
	msize, err := strconv.Atoi(opts["msize"])
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), "9p")
	conn, err := net.FileConn(f)
	if err != nil {
		return fmt.Errorf("fd %d is not a socket: %w", fd, err)
	}
	cl, err := p9.NewClient(conn, p9.WithMessageSize(uint32(msize)))
	if err != nil {
		return err
	}
	root, err := cl.Attach("")
	if err != nil {
		return err
	}
	_, rf, err := root.Walk([]string{os.Getenv(fakeMountEnv)})
	if err != nil {
		return err
	}
	if _, _, err := rf.Open(p9.ReadOnly); err != nil {
		return err
	}
	buf := make([]byte, 256)
	n, err := rf.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return err
	}
	fmt.Printf("read:%s\n", buf[:n])
	return cl.Close()
}

// TestMountCommand runs MountCommand's script with the real bash (the
// guest's /dev/tcp connection and nonce handshake) against the in-process
// SSH server's forwarded port, with mount(8) replaced by fakeMount.
func TestMountCommand(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("bash is required for TestMountCommand")
		}
		t.Skip("bash not installed")
	}
	l := newLayout(t)
	writeFile(t, filepath.Join(l.root, "README"), "mounted")
	_, client := startSSH(t)
	srv, err := ServeOverSSH(context.Background(), client, l.root, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	bin := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	fake := "#!/bin/sh\nexec " + shellQuote(self) + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "mount"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	guestPath := filepath.Join(t.TempDir(), "mnt", "it's a checkout")
	script := srv.MountCommand(guestPath, 1<<30)
	if strings.Contains(script, "msize=1073741824") || !strings.Contains(script, "msize=1048576") {
		t.Fatalf("msize not capped at 1 MiB:\n%s", script)
	}

	cmd := exec.Command(bash, "-s")
	cmd.Stdin = strings.NewReader(script)
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), fakeMountEnv+"=README")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("mount script failed: %v\n%s\nscript:\n%s", err, out.String(), script)
	}
	if !strings.Contains(out.String(), "read:mounted") {
		t.Fatalf("mount script output %q, want the file content", out.String())
	}
	// The fake mount closed its connection: serving ends.
	if err := waitDone(t, srv); err != nil {
		t.Fatalf("Wait: %v", err)
	}
}
