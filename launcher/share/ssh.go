package share

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hugelgupf/p9/p9"
	"golang.org/x/crypto/ssh"
)

const (
	// nonceBytes is the nonce's entropy; it travels hex-encoded.
	nonceBytes = 32
	// maxBadConns bounds how many connections with a wrong or missing nonce
	// are tolerated before ServeOverSSH gives up.
	maxBadConns = 16
	// nonceTimeout bounds how long a connection may take to send the nonce.
	nonceTimeout = 30 * time.Second
	// DefaultMsize is the msize MountCommand uses when given 0. Sequential
	// reads are one round trip per message; in a TCG test guest with OpenSSH,
	// 256 KiB and 1 MiB read 256 MiB in 15 s where 64 KiB took 19-27 s.
	// 512 KiB (virtio-9p's own limit) keeps the guest kernel's per-request
	// buffers moderate.
	DefaultMsize = 512 << 10
	// MaxMsize is the largest msize the Linux fd/tcp transports accept.
	MaxMsize = 1 << 20
)

// Server serves one directory to one guest mount over an SSH remote forward.
//
// Threat model: the forwarded port listens on the guest's 127.0.0.1, so any
// guest process can connect to it. The first bytes of a connection must be
// the nonce (256 random bits, compared in constant time); connections without
// it are closed, and after maxBadConns of them serving fails (a local guest
// user can deny the mount but cannot obtain the share). The nonce is only
// safe if it stays out of process arguments in the guest: MountCommand's
// script must be fed to bash on standard input. Guest root can read the mount
// anyway and is trusted as much as the guest itself. Once one connection has
// presented the nonce, the listener is closed: no further connections.
type Server struct {
	port  int
	nonce string

	ln     net.Listener
	closer io.Closer // the os.Root

	mu     sync.Mutex
	conn   net.Conn // the verified connection, once accepted
	closed bool

	done chan struct{}
	err  error
}

// ServeOverSSH asks the SSH server (the guest) for a remote forward of
// 127.0.0.1:<random port> and serves root over the first connection that
// presents the nonce, in the background. The guest mounts it with the script
// from MountCommand. Cancelling ctx, Close, or the SSH connection dropping
// ends serving.
func ServeOverSSH(ctx context.Context, client *ssh.Client, root string, opts Options) (*Server, error) {
	att, closer, err := Attacher(root, opts)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, nonceBytes)
	if _, err := rand.Read(buf); err != nil {
		closer.Close()
		return nil, fmt.Errorf("share: cannot generate a nonce: %w", err)
	}
	ln, err := client.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		closer.Close()
		return nil, fmt.Errorf("share: the guest's SSH server refused a remote port forward for the shared directory "+
			"(check AllowTcpForwarding in the guest's sshd_config): %w", err)
	}
	addr, ok := ln.Addr().(*net.TCPAddr)
	if !ok || addr.Port == 0 {
		ln.Close()
		closer.Close()
		return nil, fmt.Errorf("share: the guest's SSH server did not report the forwarded port (got %v)", ln.Addr())
	}
	s := &Server{
		port:   addr.Port,
		nonce:  hex.EncodeToString(buf),
		ln:     ln,
		closer: closer,
		done:   make(chan struct{}),
	}
	go s.run(ctx, att)
	return s, nil
}

// Port is the TCP port on the guest's 127.0.0.1 to connect to.
func (s *Server) Port() int { return s.port }

// Nonce is the secret a guest connection must send first.
func (s *Server) Nonce() string { return s.nonce }

// MountCommand returns a bash script that, run as root in the guest, connects
// to the forwarded port, sends the nonce on that connection and mounts it on
// guestPath with the 9p fd transport (the kernel takes over the socket). msize
// 0 means DefaultMsize; values are capped at MaxMsize.
//
// Feed the script to bash on standard input (e.g. an SSH session running
// "sudo bash -s" with the script as its stdin): passed as an argument
// (bash -c) the nonce would be visible in the guest's process list. The
// script needs bash (for /dev/tcp), mkdir and mount; busybox ash lacks
// /dev/tcp.
func (s *Server) MountCommand(guestPath string, msize int) string {
	if msize <= 0 {
		msize = DefaultMsize
	}
	msize = min(msize, MaxMsize)
	q := shellQuote(guestPath)
	return fmt.Sprintf(`set -e
mkdir -p -- %s
exec 3<>/dev/tcp/127.0.0.1/%d
printf '%%s' %s >&3
mount -t 9p -o trans=fd,rfdno=3,wfdno=3,version=9p2000.L,msize=%d,noxattr,nodev,nosuid devvm %s
exec 3>&-
`, q, s.port, s.nonce, msize, q)
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Wait blocks until serving ends. It returns nil when the guest's connection
// ended (unmount, guest shutdown, SSH connection dropped) or Close was called,
// and an error when no connection with the nonce arrived.
func (s *Server) Wait() error {
	<-s.done
	return s.err
}

// Close stops serving: it closes the listener and the connection, waits for
// the server to finish and closes the shared root.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	conn := s.conn
	s.mu.Unlock()
	s.ln.Close()
	if conn != nil {
		conn.Close()
	}
	<-s.done
	return nil
}

func (s *Server) run(ctx context.Context, att p9.Attacher) {
	defer close(s.done)
	defer s.closer.Close()

	stop := context.AfterFunc(ctx, func() {
		s.ln.Close()
		s.mu.Lock()
		if s.conn != nil {
			s.conn.Close()
		}
		s.mu.Unlock()
	})
	defer stop()

	conn, err := s.accept()
	s.ln.Close()
	if err != nil {
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		switch {
		case ctx.Err() != nil:
			s.err = fmt.Errorf("share: stopped before the guest mounted the shared directory: %w", context.Cause(ctx))
		case closed:
			s.err = nil
		default:
			s.err = err
		}
		return
	}
	s.mu.Lock()
	if s.closed || ctx.Err() != nil {
		s.mu.Unlock()
		conn.Close()
		return
	}
	s.conn = conn
	s.mu.Unlock()

	// Handle returns when the connection ends: guest unmount, the SSH
	// connection dropping (x/crypto closes all forwarded channels), Close or
	// ctx.
	Serve(att, conn)
}

// accept returns the first connection that presents the nonce. Connections
// are checked concurrently so a silent one cannot hold up the real mount.
func (s *Server) accept() (net.Conn, error) {
	verified := make(chan net.Conn, 1)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		bad     int
		pending = map[net.Conn]bool{}
	)
	acceptErr := make(chan error, 1)
	go func() {
		for {
			c, err := s.ln.Accept()
			if err != nil {
				acceptErr <- err
				return
			}
			mu.Lock()
			pending[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok := s.checkNonce(c)
				mu.Lock()
				delete(pending, c)
				if !ok {
					bad++
					c.Close()
					if bad >= maxBadConns {
						s.ln.Close()
					}
					mu.Unlock()
					return
				}
				mu.Unlock()
				select {
				case verified <- c:
					s.ln.Close()
				default:
					c.Close() // another connection won
				}
			}()
		}
	}()

	var conn net.Conn
	select {
	case conn = <-verified:
	case err := <-acceptErr:
		// The listener is closed: too many bad connections, Close, ctx or
		// the SSH connection ended. A verification may still be in flight.
		mu.Lock()
		for c := range pending {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
		select {
		case conn = <-verified:
		default:
			mu.Lock()
			n := bad
			mu.Unlock()
			if n >= maxBadConns {
				return nil, fmt.Errorf("share: %d connections to the forwarded port did not present the nonce; "+
					"something else in the guest is connecting to it, giving up", n)
			}
			return nil, fmt.Errorf("share: the forwarded port closed before the guest mounted the shared directory: %w", err)
		}
	}
	// Close whatever else is still being verified.
	mu.Lock()
	for c := range pending {
		c.Close()
	}
	mu.Unlock()
	return conn, nil
}

// checkNonce reads exactly len(nonce) bytes, no more, so the 9P stream that
// follows is untouched.
func (s *Server) checkNonce(c net.Conn) bool {
	t := time.AfterFunc(nonceTimeout, func() { c.Close() })
	buf := make([]byte, len(s.nonce))
	_, err := io.ReadFull(c, buf)
	if !t.Stop() || err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(buf, []byte(s.nonce)) == 1
}
