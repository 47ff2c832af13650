package share

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hugelgupf/p9/p9"
	"golang.org/x/crypto/ssh"
)

// sshServer is a minimal in-process SSH server that implements
// "tcpip-forward" (remote port forwarding) on 127.0.0.1, like sshd in the
// guest does.
type sshServer struct {
	ln  net.Listener
	cfg *ssh.ServerConfig

	mu    sync.Mutex
	conns []net.Conn
	fwds  []net.Listener
}

func startSSHServer(t *testing.T) (*sshServer, ssh.PublicKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{NoClientAuth: true, ServerVersion: "SSH-2.0-devvm-test"}
	cfg.AddHostKey(signer)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sshServer{ln: ln, cfg: cfg}
	go s.serve()
	t.Cleanup(s.close)
	return s, signer.PublicKey()
}

func (s *sshServer) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		go s.handle(c)
	}
}

// dropConnections kills every SSH connection abruptly (TCP close).
func (s *sshServer) dropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
	for _, l := range s.fwds {
		l.Close()
	}
}

func (s *sshServer) close() {
	s.ln.Close()
	s.dropConnections()
}

func (s *sshServer) handle(nc net.Conn) {
	sc, chans, reqs, err := ssh.NewServerConn(nc, s.cfg)
	if err != nil {
		nc.Close()
		return
	}
	go func() {
		for ch := range chans {
			ch.Reject(ssh.Prohibited, "only remote forwarding is implemented")
		}
	}()
	fwds := map[uint32]net.Listener{}
	defer func() {
		for _, l := range fwds {
			l.Close()
		}
	}()
	for req := range reqs {
		switch req.Type {
		case "tcpip-forward":
			var m struct {
				Addr string
				Port uint32
			}
			if ssh.Unmarshal(req.Payload, &m) != nil || m.Addr != "127.0.0.1" {
				req.Reply(false, nil)
				continue
			}
			l, err := net.Listen("tcp", net.JoinHostPort(m.Addr, strconv.Itoa(int(m.Port))))
			if err != nil {
				req.Reply(false, nil)
				continue
			}
			port := uint32(l.Addr().(*net.TCPAddr).Port)
			fwds[port] = l
			s.mu.Lock()
			s.fwds = append(s.fwds, l)
			s.mu.Unlock()
			req.Reply(true, ssh.Marshal(struct{ Port uint32 }{port}))
			go forwardConns(sc, l, m.Addr, port)
		case "cancel-tcpip-forward":
			var m struct {
				Addr string
				Port uint32
			}
			if ssh.Unmarshal(req.Payload, &m) == nil && fwds[m.Port] != nil {
				fwds[m.Port].Close()
				delete(fwds, m.Port)
				req.Reply(true, nil)
				continue
			}
			req.Reply(false, nil)
		default:
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}
}

// forwardConns opens a "forwarded-tcpip" channel to the client for every
// connection to l and copies data both ways.
func forwardConns(sc *ssh.ServerConn, l net.Listener, addr string, port uint32) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			ra := c.RemoteAddr().(*net.TCPAddr)
			payload := ssh.Marshal(struct {
				Addr       string
				Port       uint32
				OriginAddr string
				OriginPort uint32
			}{addr, port, ra.IP.String(), uint32(ra.Port)})
			ch, reqs, err := sc.OpenChannel("forwarded-tcpip", payload)
			if err != nil {
				return
			}
			go ssh.DiscardRequests(reqs)
			done := make(chan struct{}, 2)
			go func() { io.Copy(ch, c); ch.CloseWrite(); done <- struct{}{} }()
			go func() { io.Copy(c, ch); c.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
			<-done
			<-done
			ch.Close()
		}()
	}
}

func dialSSH(t *testing.T, s *sshServer, hostKey ssh.PublicKey) *ssh.Client {
	t.Helper()
	c, err := ssh.Dial("tcp", s.ln.Addr().String(), &ssh.ClientConfig{
		User:            "dev",
		HostKeyCallback: ssh.FixedHostKey(hostKey),
		Timeout:         10 * time.Second,
	})
	if err != nil {
		t.Fatalf("ssh dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
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
	s, hk := startSSHServer(t)
	client := dialSSH(t, s, hk)

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
	s.dropConnections()
	if err := waitDone(t, srv); err != nil {
		t.Fatalf("Wait after the SSH connection dropped: %v", err)
	}
	l.checkOutside(t)
}

func TestServeOverSSHGivesUpAfterBadNonces(t *testing.T) {
	l := newLayout(t)
	s, hk := startSSHServer(t)
	client := dialSSH(t, s, hk)
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
	s, hk := startSSHServer(t)
	client := dialSSH(t, s, hk)
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
	s, hk := startSSHServer(t)
	client := dialSSH(t, s, hk)
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
