// Package sshtest is an in-process SSH server for tests: ed25519 host key, public key
// authentication, exec/shell requests run with /bin/sh (real commands), pseudo-terminals
// (pty-req, window-change), env, signals, exit-status and exit-signal (or none, on demand),
// TCP forwarding both ways (tcpip-forward, direct-tcpip; loopback destinations only) and agent
// forwarding. It also simulates a booting VM whose forwarded port accepts TCP connections
// and drops them before sshd runs.
package sshtest

import (
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
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"golang.org/x/sys/unix"
)

// Options configures Start.
type Options struct {
	// HostKey is the server's host key; nil means a new ed25519 key.
	HostKey ssh.Signer
	// Authorized lists the client keys accepted (more can be added with Authorize).
	Authorized []ssh.PublicKey
	// Addr to listen on; empty means "127.0.0.1:0". Reuse a closed server's Addr to
	// simulate a restart.
	Addr string
	// RefuseFirst makes the server drop its first RefuseFirst TCP connections at once,
	// like a QEMU port forward while the guest's sshd is not running yet.
	RefuseFirst int
}

// Pty is a recorded pty-req.
type Pty struct {
	Term       string
	Cols, Rows int
}

// WindowSize is a recorded window-change.
type WindowSize struct{ Cols, Rows int }

// Server is a running test server. Its methods are safe for concurrent use.
type Server struct {
	// Addr is the host:port the server listens on.
	Addr string
	// HostKey is the server's host key.
	HostKey ssh.Signer

	cfg *ssh.ServerConfig
	ln  net.Listener

	mu            sync.Mutex
	authorized    map[string]bool
	refuse        int
	refused       int
	omitExit      bool
	freeze        bool
	frozen        []*ssh.Request
	ptys          []Pty
	windowChanges []WindowSize
	commands      []string
	dialed        []string
	conns         map[net.Conn]bool
	closed        bool
}

// NewKey returns a new ed25519 signer.
func NewKey(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Start starts a server; it is closed when the test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	if o.HostKey == nil {
		o.HostKey = NewKey(t)
	}
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	s := &Server{HostKey: o.HostKey, authorized: map[string]bool{}, refuse: o.RefuseFirst, conns: map[net.Conn]bool{}}
	for _, k := range o.Authorized {
		s.Authorize(k)
	}
	s.cfg = &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.authorized[string(key.Marshal())] {
				return &ssh.Permissions{}, nil
			}
			return nil, errors.New("key not authorized")
		},
	}
	s.cfg.AddHostKey(o.HostKey)
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		t.Fatalf("sshtest: listen on %s: %v", o.Addr, err)
	}
	s.ln, s.Addr = ln, ln.Addr().String()
	go s.serve()
	t.Cleanup(s.Close)
	return s
}

// Authorize accepts key for authentication.
func (s *Server) Authorize(key ssh.PublicKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.authorized[string(key.Marshal())] = true
}

// SetOmitExitStatus makes sessions end without exit-status or exit-signal.
func (s *Server) SetOmitExitStatus(omit bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.omitExit = omit
}

// SetFreeze(true) makes the server stop answering global requests such as keepalives, like
// a hung peer; SetFreeze(false) answers the held ones.
func (s *Server) SetFreeze(freeze bool) {
	s.mu.Lock()
	s.freeze = freeze
	held := s.frozen
	if !freeze {
		s.frozen = nil
	}
	s.mu.Unlock()
	if !freeze {
		for _, r := range held {
			r.Reply(false, nil)
		}
	}
}

// Refused is the number of connections dropped because of Options.RefuseFirst.
func (s *Server) Refused() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// Ptys returns the pty requests received so far.
func (s *Server) Ptys() []Pty {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Pty(nil), s.ptys...)
}

// WindowChanges returns the window-change requests received so far.
func (s *Server) WindowChanges() []WindowSize {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]WindowSize(nil), s.windowChanges...)
}

// Commands returns the exec commands received so far ("" for a shell request).
func (s *Server) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.commands...)
}

// Dialed returns the host:port destinations of direct-tcpip channels (ssh -L, ProxyJump).
func (s *Server) Dialed() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.dialed...)
}

// KnownHostsLine returns a known_hosts line (with newline) for this server's key under name
// (e.g. an alias, or knownhosts.Normalize(s.Addr)).
func (s *Server) KnownHostsLine(name string) string {
	return knownhosts.Line([]string{name}, s.HostKey.PublicKey()) + "\n"
}

// Close stops the server and drops its connections.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	conns := s.conns
	s.conns = map[net.Conn]bool{}
	s.mu.Unlock()
	s.ln.Close()
	for c := range conns {
		c.Close()
	}
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = true
	return true
}

func (s *Server) serve() {
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		drop := s.refuse > 0
		if drop {
			s.refuse--
			s.refused++
		}
		s.mu.Unlock()
		if drop {
			nc.Close()
			continue
		}
		if !s.track(nc) {
			nc.Close()
			return
		}
		go s.handle(nc)
	}
}

func (s *Server) handle(nc net.Conn) {
	defer func() {
		nc.Close()
		s.mu.Lock()
		delete(s.conns, nc)
		s.mu.Unlock()
	}()
	sc, chans, reqs, err := ssh.NewServerConn(nc, s.cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	fw := &forwards{listeners: map[string]net.Listener{}}
	defer fw.closeAll()
	go s.globalRequests(sc, reqs, fw)
	for nch := range chans {
		switch nch.ChannelType() {
		case "session":
			go s.session(sc, nch)
		case "direct-tcpip":
			go s.directTCPIP(nch)
		default:
			nch.Reject(ssh.UnknownChannelType, "sshtest does not support "+nch.ChannelType())
		}
	}
}

// loopbackHost returns host if it names a loopback address (tests must not reach further).
func loopbackHost(host string) (string, bool) {
	if host == "localhost" {
		return "127.0.0.1", true
	}
	ip := net.ParseIP(host)
	return host, ip != nil && ip.IsLoopback()
}

type forwards struct {
	mu        sync.Mutex
	listeners map[string]net.Listener
}

func (f *forwards) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, l := range f.listeners {
		l.Close()
	}
}

func (s *Server) globalRequests(sc *ssh.ServerConn, reqs <-chan *ssh.Request, fw *forwards) {
	for req := range reqs {
		switch req.Type {
		case "tcpip-forward":
			var m struct {
				Addr string
				Port uint32
			}
			if ssh.Unmarshal(req.Payload, &m) != nil {
				req.Reply(false, nil)
				continue
			}
			host, ok := loopbackHost(m.Addr)
			if !ok {
				req.Reply(false, nil)
				continue
			}
			l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(int(m.Port))))
			if err != nil {
				req.Reply(false, nil)
				continue
			}
			port := uint32(l.Addr().(*net.TCPAddr).Port)
			fw.mu.Lock()
			fw.listeners[net.JoinHostPort(m.Addr, strconv.Itoa(int(port)))] = l
			fw.mu.Unlock()
			var resp []byte
			if m.Port == 0 {
				resp = ssh.Marshal(struct{ Port uint32 }{port})
			}
			req.Reply(true, resp)
			go acceptForwarded(sc, l, m.Addr, port)
		case "cancel-tcpip-forward":
			var m struct {
				Addr string
				Port uint32
			}
			ssh.Unmarshal(req.Payload, &m)
			key := net.JoinHostPort(m.Addr, strconv.Itoa(int(m.Port)))
			fw.mu.Lock()
			l, ok := fw.listeners[key]
			delete(fw.listeners, key)
			fw.mu.Unlock()
			if ok {
				l.Close()
			}
			req.Reply(ok, nil)
		default:
			s.mu.Lock()
			hold := s.freeze && req.WantReply
			if hold {
				s.frozen = append(s.frozen, req)
			}
			s.mu.Unlock()
			if !hold {
				req.Reply(false, nil)
			}
		}
	}
}

func acceptForwarded(sc *ssh.ServerConn, l net.Listener, addr string, port uint32) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		origin := c.RemoteAddr().(*net.TCPAddr)
		payload := ssh.Marshal(struct {
			Addr       string
			Port       uint32
			OriginAddr string
			OriginPort uint32
		}{addr, port, origin.IP.String(), uint32(origin.Port)})
		go func() {
			ch, reqs, err := sc.OpenChannel("forwarded-tcpip", payload)
			if err != nil {
				c.Close()
				return
			}
			go ssh.DiscardRequests(reqs)
			pipe(ch, c)
		}()
	}
}

func (s *Server) directTCPIP(nch ssh.NewChannel) {
	var d struct {
		Host     string
		Port     uint32
		OrigAddr string
		OrigPort uint32
	}
	if err := ssh.Unmarshal(nch.ExtraData(), &d); err != nil {
		nch.Reject(ssh.ConnectionFailed, "bad direct-tcpip request")
		return
	}
	host, ok := loopbackHost(d.Host)
	if !ok {
		nch.Reject(ssh.Prohibited, "sshtest only connects to loopback addresses")
		return
	}
	dest := net.JoinHostPort(d.Host, strconv.Itoa(int(d.Port)))
	s.mu.Lock()
	s.dialed = append(s.dialed, dest)
	s.mu.Unlock()
	c, err := net.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(int(d.Port))))
	if err != nil {
		nch.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nch.Accept()
	if err != nil {
		c.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	pipe(ch, c)
}

// pipe copies both ways with half-closes, then closes both ends.
func pipe(ch ssh.Channel, c net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		io.Copy(ch, c)
		ch.CloseWrite()
	}()
	go func() {
		defer wg.Done()
		io.Copy(c, ch)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}()
	wg.Wait()
	ch.Close()
	c.Close()
}

// session is the state of one "session" channel.
type session struct {
	s     *Server
	sc    *ssh.ServerConn
	ch    ssh.Channel
	mu    sync.Mutex
	env   []string
	pty   *Pty
	ptmx  *os.File
	cmd   *exec.Cmd
	agent string // SSH_AUTH_SOCK for the command
	clean []func()
}

func (s *Server) session(sc *ssh.ServerConn, nch ssh.NewChannel) {
	ch, reqs, err := nch.Accept()
	if err != nil {
		return
	}
	ss := &session{s: s, sc: sc, ch: ch}
	defer func() {
		for _, f := range ss.clean {
			f()
		}
	}()
	started := false
	for req := range reqs {
		ok := true
		switch req.Type {
		case "env":
			var m struct{ Name, Value string }
			if ok = ssh.Unmarshal(req.Payload, &m) == nil; ok {
				ss.env = append(ss.env, m.Name+"="+m.Value)
			}
		case "pty-req":
			var m struct {
				Term                      string
				Cols, Rows, Width, Height uint32
				Modes                     string
			}
			if ok = ssh.Unmarshal(req.Payload, &m) == nil; ok {
				p := Pty{Term: m.Term, Cols: int(m.Cols), Rows: int(m.Rows)}
				ss.pty = &p
				s.mu.Lock()
				s.ptys = append(s.ptys, p)
				s.mu.Unlock()
			}
		case "window-change":
			var m struct{ Cols, Rows, Width, Height uint32 }
			if ok = ssh.Unmarshal(req.Payload, &m) == nil; ok {
				ss.mu.Lock()
				if ss.ptmx != nil {
					pty.Setsize(ss.ptmx, &pty.Winsize{Rows: uint16(m.Rows), Cols: uint16(m.Cols)})
				}
				ss.mu.Unlock()
				s.mu.Lock()
				s.windowChanges = append(s.windowChanges, WindowSize{Cols: int(m.Cols), Rows: int(m.Rows)})
				s.mu.Unlock()
			}
		case "auth-agent-req@openssh.com":
			ok = ss.startAgent() == nil
		case "signal":
			var m struct{ Signal string }
			if ok = ssh.Unmarshal(req.Payload, &m) == nil; ok {
				ss.mu.Lock()
				if ss.cmd != nil && ss.cmd.Process != nil {
					if sig := unix.SignalNum("SIG" + m.Signal); sig != 0 {
						ss.cmd.Process.Signal(sig)
					}
				}
				ss.mu.Unlock()
			}
		case "exec", "shell":
			var m struct{ Command string }
			if req.Type == "exec" {
				ok = ssh.Unmarshal(req.Payload, &m) == nil
			}
			if ok = ok && !started; ok {
				started = true
				s.mu.Lock()
				s.commands = append(s.commands, m.Command)
				s.mu.Unlock()
				// Reply before starting: a quick command could otherwise close the
				// channel before the client hears that its request succeeded.
				if req.WantReply {
					req.Reply(true, nil)
				}
				go ss.run(m.Command, req.Type == "shell")
				continue
			}
		default:
			ok = false
		}
		if req.WantReply {
			req.Reply(ok, nil)
		}
	}
}

// startAgent serves a unix socket whose connections are carried to the client's agent.
func (ss *session) startAgent() error {
	dir, err := os.MkdirTemp("", "sshtest-agent-")
	if err != nil {
		return err
	}
	sock := filepath.Join(dir, "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		os.RemoveAll(dir)
		return err
	}
	ss.clean = append(ss.clean, func() { l.Close(); os.RemoveAll(dir) })
	ss.mu.Lock()
	ss.agent = sock
	ss.mu.Unlock()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				ch, reqs, err := ss.sc.OpenChannel("auth-agent@openssh.com", nil)
				if err != nil {
					c.Close()
					return
				}
				go ssh.DiscardRequests(reqs)
				pipe(ch, c)
			}()
		}
	}()
	return nil
}

func (ss *session) run(command string, shell bool) {
	args := []string{"-c", command}
	if shell {
		args = nil
	}
	cmd := exec.Command("/bin/sh", args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SSH_AUTH_SOCK=") { // only a forwarded agent is visible
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, ss.env...)
	ss.mu.Lock()
	if ss.agent != "" {
		cmd.Env = append(cmd.Env, "SSH_AUTH_SOCK="+ss.agent)
	}
	ss.mu.Unlock()
	if ss.pty != nil {
		cmd.Env = append(cmd.Env, "TERM="+ss.pty.Term)
	}
	cmd.WaitDelay = 10 * time.Second // do not hang on a stray grandchild holding the output

	if ss.pty != nil {
		ss.runPty(cmd)
	} else {
		ss.runPipes(cmd)
	}
	ss.ch.CloseWrite()
	ss.s.mu.Lock()
	omit := ss.s.omitExit
	ss.s.mu.Unlock()
	if !omit {
		ss.sendExit(cmd)
	}
	ss.ch.Close()
}

// runPipes runs cmd without a terminal; the exit is read from cmd.ProcessState.
func (ss *session) runPipes(cmd *exec.Cmd) {
	stdin, err := cmd.StdinPipe()
	if err != nil {
		fmt.Fprintf(ss.ch.Stderr(), "sshtest: %v\n", err)
		return
	}
	cmd.Stdout, cmd.Stderr = ss.ch, ss.ch.Stderr()
	if ss.start(cmd) != nil {
		return
	}
	go func() {
		io.Copy(stdin, ss.ch)
		stdin.Close()
	}()
	cmd.Wait()
}

// runPty runs cmd on a new pseudo-terminal; the exit is read from cmd.ProcessState.
func (ss *session) runPty(cmd *exec.Cmd) {
	ss.mu.Lock()
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: uint16(ss.pty.Rows), Cols: uint16(ss.pty.Cols)})
	if err == nil {
		ss.ptmx, ss.cmd = ptmx, cmd
	}
	ss.mu.Unlock()
	if err != nil {
		fmt.Fprintf(ss.ch.Stderr(), "sshtest: %v\n", err)
		return
	}
	go io.Copy(ptmx, ss.ch)
	out := make(chan struct{})
	go func() {
		io.Copy(ss.ch, ptmx) // ends with EIO once the command and its children are gone
		close(out)
	}()
	cmd.Wait()
	select {
	case <-out:
	case <-time.After(10 * time.Second): // a stray child holds the terminal
	}
	ss.mu.Lock()
	ptmx.Close()
	ss.ptmx = nil
	ss.mu.Unlock()
}

func (ss *session) start(cmd *exec.Cmd) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(ss.ch.Stderr(), "sshtest: %v\n", err)
		return err
	}
	ss.cmd = cmd
	return nil
}

func (ss *session) sendExit(cmd *exec.Cmd) {
	if cmd.ProcessState == nil {
		ss.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{127}))
		return
	}
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		ss.ch.SendRequest("exit-signal", false, ssh.Marshal(struct {
			Signal     string
			CoreDumped bool
			Error      string
			Lang       string
		}{strings.TrimPrefix(unix.SignalName(ws.Signal()), "SIG"), ws.CoreDump(), "", ""}))
		return
	}
	ss.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(ws.ExitStatus())}))
}
