package sshx

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// echoServer answers each line with "echo: <line>".
func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				sc.Buffer(make([]byte, 1<<20), 1<<20)
				for sc.Scan() {
					io.WriteString(c, "echo: "+sc.Text()+"\n")
				}
			}()
		}
	}()
	return l.Addr().String()
}

func roundTrip(t *testing.T, addr, msg string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, msg+"\n")
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || got != "echo: "+msg+"\n" {
		t.Errorf("through %s: %q, %v", addr, got, err)
	}
}

func TestLocalForward(t *testing.T) {
	srv, _, c := connected(t)
	echo := echoServer(t)
	ctx, cancel := context.WithCancel(testCtx(t))
	l, err := c.LocalForward(ctx, "127.0.0.1:0", echo)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, l.Addr().String(), "hello")
	roundTrip(t, l.Addr().String(), strings.Repeat("x", 100000))
	if d := srv.Dialed(); len(d) != 2 || d[0] != echo {
		t.Errorf("server dialed %q, want %s twice", d, echo)
	}
	cancel()
	if _, err := l.Accept(); err == nil {
		t.Error("listener still open after ctx ended")
	}
	if _, err := c.LocalForward(testCtx(t), "not-a-port", echo); err == nil {
		t.Error("bad bind accepted")
	}

	// A destination nobody listens on: the local connection is closed and reported.
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	errs := make(chan error, 1)
	c.OnForwardError = func(err error) { errs <- err }
	l2, err := c.LocalForward(testCtx(t), "0", deadAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	conn, err := net.Dial("tcp", l2.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if n, err := conn.Read(make([]byte, 1)); err == nil {
		t.Errorf("read %d bytes from a forward to a closed port", n)
	}
	conn.Close()
	if err := <-errs; !strings.Contains(err.Error(), deadAddr) {
		t.Errorf("forward error %q does not name %s", err, deadAddr)
	}
}

func TestRemoteForward(t *testing.T) {
	need(t, "bash")
	_, _, c := connected(t)
	echo := echoServer(t)
	l, err := c.RemoteForward(testCtx(t), "0", echo) // port 0: the server picks
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	if port == 0 {
		t.Fatal("no port reported for the remote listener")
	}
	// The test server listens on the same machine, so connect to it as a guest process would.
	var out strings.Builder
	cmd := "exec 3<>/dev/tcp/127.0.0.1/" + strconv.Itoa(port) + "; echo remote >&3; head -n1 <&3"
	st, err := c.Run(testCtx(t), "bash -c "+ShellQuote([]string{cmd}), nil, &out, os.Stderr, false)
	if err != nil || st != 0 || out.String() != "echo: remote\n" {
		t.Errorf("remote side through the forward: %d, %v, %q", st, err, out.String())
	}
	roundTrip(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), "direct")
}

func TestParseForward(t *testing.T) {
	for spec, want := range map[string]Forward{
		"8080:localhost:80":           {"127.0.0.1:8080", "localhost:80"},
		"127.0.0.1:8080:localhost:80": {"127.0.0.1:8080", "localhost:80"},
		"*:8080:10.0.2.15:80":         {"0.0.0.0:8080", "10.0.2.15:80"},
		"[::1]:8080:[::1]:80":         {"[::1]:8080", "[::1]:80"},
		":8080:db:5432":               {"127.0.0.1:8080", "db:5432"},
	} {
		got, err := ParseForward(spec)
		if err != nil || got != want {
			t.Errorf("ParseForward(%q) = %+v, %v; want %+v", spec, got, err, want)
		}
	}
	for _, bad := range []string{"", "8080", "8080:80", "x:localhost:80", "8080:localhost:0", "8080:localhost:99999", "8080::80", "[::1:8080:h:80", "8080:local host:80", "1:2:3:4:5"} {
		if f, err := ParseForward(bad); err == nil {
			t.Errorf("ParseForward(%q) = %+v, want an error", bad, f)
		}
	}
}

// startAgent serves an in-memory agent holding one new ed25519 key on a unix socket and
// points SSH_AUTH_SOCK at it.
func startAgent(t *testing.T) ssh.PublicKey {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	kr := agent.NewKeyring()
	if err := kr.Add(agent.AddedKey{PrivateKey: priv, Comment: "agent-key"}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { agent.ServeAgent(kr, c); c.Close() }()
		}
	}()
	t.Setenv("SSH_AUTH_SOCK", sock)
	pub, _ := ssh.NewPublicKey(priv.Public())
	return pub
}

func TestAgent(t *testing.T) {
	need(t, "ssh-add")
	agentKey := startAgent(t)
	srv, tg, _ := connected(t)

	// Authentication with the agent's key only.
	srv.Authorize(agentKey)
	tg.Key, tg.UseAgent, tg.AgentForward = nil, true, true
	c, err := Dial(testCtx(t), tg)
	if err != nil {
		t.Fatalf("Dial with the agent's key: %v", err)
	}
	defer c.Close()
	var out strings.Builder
	st, err := c.Run(testCtx(t), "ssh-add -L", nil, &out, os.Stderr, false)
	if err != nil || st != 0 {
		t.Fatalf("ssh-add -L through the forwarded agent = %d, %v", st, err)
	}
	if want := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(agentKey))); !strings.Contains(out.String(), want) {
		t.Errorf("forwarded agent lists %q, want %q", out.String(), want)
	}

	// Without AgentForward, the session has no agent.
	tg.AgentForward = false
	c2, err := Dial(testCtx(t), tg)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	out.Reset()
	if st, err := c2.Run(testCtx(t), `echo "agent=$SSH_AUTH_SOCK"`, nil, &out, nil, false); st != 0 || err != nil || out.String() != "agent=\n" {
		t.Errorf("session without agent forwarding: %d, %v, %q", st, err, out.String())
	}
}
