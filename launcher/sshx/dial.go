package sshx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// Target describes an SSH server and how to authenticate and verify it.
type Target struct {
	// Addr is host:port, e.g. "127.0.0.1:10022". With Jump set it is resolved by the jump host.
	Addr string
	// User is the remote user name.
	User string
	// Key is devvm's identity (from EnsureUserKey); may be nil when Auth or UseAgent is enough.
	Key *Key
	// Auth lists extra authentication methods, tried after the public keys of Key and the
	// agent. x/crypto tries each method type once, so put other public keys here only when
	// Key and UseAgent are unset.
	Auth []ssh.AuthMethod
	// ExtraKeys are more keys offered with Key and the agent's in the same publickey
	// method (x/crypto tries each method type once, so a second publickey method in
	// Auth would never be tried after the first).
	ExtraKeys []*Key
	// UseAgent adds the keys of the agent at $SSH_AUTH_SOCK (if set) to the public keys.
	UseAgent bool
	// KnownHosts is the known_hosts file to verify the host key against. Required.
	// For a devvm VM it is the VM's own file holding one key pinned by Pin.
	KnownHosts string
	// HostKeyAlias, when set, is the name the host key is recorded under (like OpenSSH's
	// HostKeyAlias), e.g. "devvm-<name>"; otherwise Addr is looked up ("[127.0.0.1]:10022").
	HostKeyAlias string
	// Jump, when set, is dialed first (and verified against its own KnownHosts), and the
	// connection to Addr is tunnelled through it, like OpenSSH's ProxyJump.
	Jump *Target
	// AgentForward forwards the local agent ($SSH_AUTH_SOCK, if set) to sessions.
	AgentForward bool
	// HandshakeTimeout bounds TCP connect + SSH handshake + authentication of one attempt.
	// Zero means 20 s.
	HandshakeTimeout time.Duration
	// patience, when longer than HandshakeTimeout, is how long an attempt may go on once
	// the server has answered (sent its banner): HandshakeTimeout then bounds only the wait
	// for that first answer (WaitReady: a half-open forward is given up on quickly, a slow
	// but answering sshd is not abandoned mid-handshake, which would pile up its
	// unauthenticated connections until it throttles them, OpenSSH's MaxStartups).
	patience time.Duration
	// Ciphers is the cipher preference, most preferred first; nil means x/crypto's default
	// (AES-GCM first). EmulatedCPUCiphers suits a guest under QEMU's TCG.
	Ciphers []string
}

// EmulatedCPUCiphers is the cipher preference for a guest whose CPU QEMU emulates (TCG):
// its default CPU model has no AES-NI, so the guest's sshd runs AES in plain software and
// ChaCha20-Poly1305 is the cheapest cipher for it (measured with OpenSSH 9.2 in the test
// guest under TCG: 12 MB/s against 6.4 MB/s with aes128-gcm). x/crypto's default order,
// AES-GCM first, is right for real CPUs.
var EmulatedCPUCiphers = []string{
	ssh.CipherChaCha20Poly1305, ssh.CipherAES128GCM, ssh.CipherAES256GCM, ssh.CipherAES128CTR, ssh.CipherAES256CTR,
}

const defaultHandshakeTimeout = 20 * time.Second

// ErrAuthRefused is matched (errors.Is) by errors where sshd answered but refused every key.
var ErrAuthRefused = errors.New("SSH authentication refused")

// Client is an authenticated SSH connection. The embedded *ssh.Client gives access to the
// low-level API (NewSession, Dial, Listen, SendRequest...).
type Client struct {
	*ssh.Client
	name      string // for messages
	hostKey   ssh.PublicKey
	jump      *Client
	agentConn net.Conn
	agentSock string        // set when agent forwarding is active
	done      chan struct{} // closed when the connection ends

	// OnForwardError, if set, is told about connections LocalForward and RemoteForward
	// could not carry (e.g. nothing listening on the other side). Set it before forwarding.
	OnForwardError func(error)
	closeOnce      sync.Once
	closeErr       error
}

// HostKey returns the key the server proved it holds.
func (c *Client) HostKey() ssh.PublicKey { return c.hostKey }

// Close closes the connection and, with ProxyJump, the connection to the jump host.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closeErr = c.Client.Close()
		if c.agentConn != nil {
			c.agentConn.Close()
		}
		if c.jump != nil {
			c.jump.Close()
		}
	})
	return c.closeErr
}

// Dial connects to t, verifying its host key strictly against t.KnownHosts.
func Dial(ctx context.Context, t Target) (*Client, error) {
	return dial(ctx, &t, false)
}

// Pin connects to t, accepting whatever ed25519 host key it presents, authenticates, and
// then records that key as the only entry of t.KnownHosts (replacing the previous one).
// Use it only right after starting the VM yourself on a loopback port you own.
func Pin(ctx context.Context, t Target) (ssh.PublicKey, error) {
	c, err := dial(ctx, &t, true)
	if err != nil {
		return nil, err
	}
	key := c.HostKey()
	c.Close()
	return key, nil
}

// attemptError classifies a failed connection attempt for WaitReady.
type attemptError struct {
	err       error
	permanent bool // retrying cannot help (host key, configuration)
	auth      bool // sshd answered and refused our keys
}

func (e *attemptError) Error() string { return e.err.Error() }
func (e *attemptError) Unwrap() error { return e.err }

func (t *Target) displayName() string {
	if t.HostKeyAlias != "" {
		return fmt.Sprintf("%s (%s)", t.HostKeyAlias, t.Addr)
	}
	return t.Addr
}

func dial(ctx context.Context, t *Target, pin bool) (*Client, error) {
	for attempt := 1; ; attempt++ {
		c, err := dialOnce(ctx, t, pin)
		if err == nil {
			return c, nil
		}
		var ae *attemptError
		if !errors.As(err, &ae) {
			return nil, err
		}
		if ae.permanent || ae.auth || attempt == dialAttempts || !transient(ae.err) {
			return nil, ae.err
		}
		// sshd drops a connection at once while it throttles unauthenticated
		// ones (OpenSSH's MaxStartups, a slow guest under TCG): try again.
		select {
		case <-ctx.Done():
			return nil, ae.err
		case <-time.After(time.Duration(attempt) * 300 * time.Millisecond):
		}
	}
}

// dialAttempts bounds the tries of Dial on a connection the server drops.
const dialAttempts = 4

// transient tells a server that dropped the connection (EOF or a reset
// before the handshake finished) from other failures.
func transient(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || strings.Contains(err.Error(), "handshake failed: EOF")
}

// dialOnce makes one connection attempt; errors are *attemptError.
func dialOnce(ctx context.Context, t *Target, pin bool) (*Client, error) {
	name, address := hostKeyName(t)
	if t.Addr == "" || t.User == "" {
		return nil, &attemptError{err: fmt.Errorf("SSH target %q needs both an address and a user", name), permanent: true}
	}
	cfg := &ssh.ClientConfig{User: t.User}
	cfg.Ciphers = t.Ciphers
	var presented ssh.PublicKey
	var hostKeyChecked atomic.Bool
	if pin {
		if t.KnownHosts == "" {
			return nil, &attemptError{err: fmt.Errorf("no known_hosts file given to record the host key of %s", name), permanent: true}
		}
		cfg.HostKeyAlgorithms = []string{ssh.KeyAlgoED25519}
		cfg.HostKeyCallback = func(_ string, _ net.Addr, key ssh.PublicKey) error {
			hostKeyChecked.Store(true)
			if key.Type() != ssh.KeyAlgoED25519 {
				return fmt.Errorf("%s presented a %s host key; devvm pins only ssh-ed25519 keys", name, key.Type())
			}
			presented = key
			return nil
		}
	} else {
		cb, algos, err := strictHostKeys(t)
		if err != nil {
			return nil, &attemptError{err: err, permanent: true}
		}
		cfg.HostKeyAlgorithms = algos
		cfg.HostKeyCallback = func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			hostKeyChecked.Store(true)
			if err := cb(hostname, remote, key); err != nil {
				return err
			}
			presented = key
			return nil
		}
	}

	var signers []ssh.Signer
	if t.Key != nil && t.Key.Signer != nil {
		signers = append(signers, t.Key.Signer)
	}
	var agentConn net.Conn
	if sock := os.Getenv("SSH_AUTH_SOCK"); t.UseAgent && sock != "" {
		var err error
		if agentConn, err = net.Dial("unix", sock); err != nil {
			return nil, &attemptError{err: fmt.Errorf("connect to the SSH agent at SSH_AUTH_SOCK=%s: %w", sock, err), permanent: true}
		}
		if as, err := agent.NewClient(agentConn).Signers(); err == nil {
			signers = append(signers, as...)
		}
	}
	for _, k := range t.ExtraKeys {
		signers = append(signers, k.Signer)
	}
	if len(signers) > 0 {
		cfg.Auth = append(cfg.Auth, ssh.PublicKeys(signers...))
	}
	cfg.Auth = append(cfg.Auth, t.Auth...)
	if len(cfg.Auth) == 0 {
		return nil, &attemptError{err: fmt.Errorf("no SSH key or authentication method configured for %s", name), permanent: true}
	}

	c, err := connect(ctx, t, address, cfg, &hostKeyChecked)
	if err != nil {
		if agentConn != nil {
			agentConn.Close()
		}
		return nil, err
	}
	c.name = t.displayName()
	c.hostKey = presented
	c.agentConn = agentConn
	if pin {
		if err := writePinned(t.KnownHosts, name, presented); err != nil {
			c.Close()
			return nil, &attemptError{err: err, permanent: true}
		}
	}
	if sock := os.Getenv("SSH_AUTH_SOCK"); t.AgentForward && sock != "" {
		if err := agent.ForwardToRemote(c.Client, sock); err != nil {
			c.Close()
			return nil, &attemptError{err: fmt.Errorf("set up agent forwarding to %s: %w", name, err), permanent: true}
		}
		c.agentSock = sock
	}
	return c, nil
}

// connect opens the transport (directly or through t.Jump) and runs the SSH handshake and
// authentication within t.HandshakeTimeout.
func connect(ctx context.Context, t *Target, address string, cfg *ssh.ClientConfig, hostKeyChecked *atomic.Bool) (*Client, error) {
	timeout := t.HandshakeTimeout
	if timeout <= 0 {
		timeout = defaultHandshakeTimeout
	}
	full := max(timeout, t.patience)
	hctx, cancel := context.WithTimeout(ctx, full)
	defer cancel()

	var jump *Client
	var conn net.Conn
	var err error
	if t.Jump != nil {
		if jump, err = Dial(hctx, *t.Jump); err != nil {
			return nil, &attemptError{err: fmt.Errorf("connect to jump host %s: %w", t.Jump.displayName(), err), permanent: isPermanent(err)}
		}
		conn, err = jump.DialContext(hctx, "tcp", t.Addr)
		if err != nil {
			jump.Close()
			return nil, &attemptError{err: fmt.Errorf("connect to %s through jump host %s: %w", t.Addr, t.Jump.displayName(), err)}
		}
	} else {
		var d net.Dialer
		if conn, err = d.DialContext(hctx, "tcp", t.Addr); err != nil {
			return nil, &attemptError{err: fmt.Errorf("connect to %s: %w", t.displayName(), err)}
		}
	}
	closeJump := func() {
		if jump != nil {
			jump.Close()
		}
	}
	// Bound the handshake: ClientConfig.Timeout only covers the TCP connect, and deadlines
	// are not supported on connections tunnelled through a jump host, so close the
	// connection when the attempt's time is up: timeout for the server's first answer,
	// full once it has answered.
	ac := &answerConn{Conn: conn, answered: make(chan struct{})}
	var cut atomic.Bool
	handshook := make(chan struct{})
	go func() {
		early := time.NewTimer(timeout)
		defer early.Stop()
		select {
		case <-handshook:
			return
		case <-hctx.Done():
		case <-early.C:
			select {
			case <-ac.answered:
				select {
				case <-handshook:
					return
				case <-hctx.Done():
				}
			default:
			}
		}
		cut.Store(true)
		conn.Close()
	}()
	cc, chans, reqs, err := ssh.NewClientConn(ac, address, cfg)
	close(handshook)
	interrupted := cut.Load()
	if err != nil {
		conn.Close()
		closeJump()
		switch {
		case interrupted && ctx.Err() != nil:
			return nil, &attemptError{err: fmt.Errorf("SSH handshake with %s: %w", t.displayName(), ctx.Err())}
		case interrupted:
			return nil, &attemptError{err: fmt.Errorf("SSH handshake with %s did not complete within %s", t.displayName(), timeout)}
		}
		var mm *HostKeyMismatchError
		var hu *HostKeyUnknownError
		if errors.As(err, &mm) || errors.As(err, &hu) {
			return nil, &attemptError{err: err, permanent: true}
		}
		if hostKeyChecked.Load() && strings.Contains(err.Error(), "unable to authenticate") {
			return nil, &attemptError{auth: true, err: fmt.Errorf("%w by %s for user %q (%v): %s", ErrAuthRefused, t.displayName(), t.User, err, authHint(t))}
		}
		return nil, &attemptError{err: fmt.Errorf("SSH handshake with %s: %w", t.displayName(), err)}
	}
	if interrupted {
		cc.Close()
		closeJump()
		return nil, &attemptError{err: fmt.Errorf("SSH handshake with %s: %w", t.displayName(), context.Cause(hctx))}
	}
	c := &Client{Client: ssh.NewClient(cc, chans, reqs), jump: jump, done: make(chan struct{})}
	go func() {
		c.Client.Wait()
		close(c.done)
	}()
	return c, nil
}

// answerConn tells (answered closes) when the server has sent its first bytes.
type answerConn struct {
	net.Conn
	once     sync.Once
	answered chan struct{}
}

func (a *answerConn) Read(p []byte) (int, error) {
	n, err := a.Conn.Read(p)
	if n > 0 {
		a.once.Do(func() { close(a.answered) })
	}
	return n, err
}

func isPermanent(err error) bool {
	var ae *attemptError
	var mm *HostKeyMismatchError
	var hu *HostKeyUnknownError
	return (errors.As(err, &ae) && ae.permanent) || errors.As(err, &mm) || errors.As(err, &hu) || errors.Is(err, ErrAuthRefused)
}

func authHint(t *Target) string {
	if t.Key != nil {
		return fmt.Sprintf("check that the public key in %s is listed in ~%s/.ssh/authorized_keys on the server (devvm installs it in the VM image; rebuild the VM if the key was recreated)", t.Key.PublicPath, t.User)
	}
	return fmt.Sprintf("check that one of your keys is listed in ~%s/.ssh/authorized_keys on the server", t.User)
}

// WaitReady dials t every poll interval (at most 250 ms; 0 means 250 ms) until a connection
// is established and authenticated, or ctx ends. It is meant for a VM that is booting: its
// forwarded port accepts TCP long before sshd answers, so resets, EOFs and timeouts are
// retried. A new attempt starts every poll interval even while earlier ones still wait for
// an answer (at most maxInflight, 3, at once: sshd limits unauthenticated connections per peer —
// dropbear to 5, OpenSSH MaxStartups 10 — and every forwarded attempt comes from the same slirp
// address), so an attempt stuck on a half-open forward does not hold readiness back alone;
// the first success wins. Host key problems end the wait at once; an
// authentication refusal ends it after three refusals in a row. With pin, the host key is
// recorded like Pin does, otherwise it is verified strictly like Dial does.
func WaitReady(ctx context.Context, t Target, poll time.Duration, pin bool) (*Client, error) {
	const maxPoll = 250 * time.Millisecond
	const maxAuthRefusals = 3
	const maxInflight = 3
	if poll <= 0 || poll > maxPoll {
		poll = maxPoll
	}
	type result struct {
		c   *Client
		err error
	}
	actx, cancel := context.WithCancel(ctx)
	results := make(chan result, maxInflight)
	inflight := 0
	finish := func() {
		// Close what late attempts still produce.
		cancel()
		go func(n int) {
			for ; n > 0; n-- {
				if r := <-results; r.c != nil {
					r.c.Close()
				}
			}
		}(inflight)
	}
	start := time.Now()
	var last error
	attempts, refusals := 0, 0
	launch := func() {
		inflight++
		attempts++
		tc := t
		// Early attempts give up quickly (a half-open forward holds an
		// attempt until its timeout); later ones get more time, up to the
		// target's, so a slow but alive guest still gets through.
		full := t.HandshakeTimeout
		if full <= 0 {
			full = defaultHandshakeTimeout
		}
		tc.HandshakeTimeout = min(full, 1500*time.Millisecond+time.Duration(attempts)*100*time.Millisecond)
		tc.patience = full
		go func() {
			c, err := dialOnce(actx, &tc, pin)
			results <- result{c, err}
		}()
	}
	launch()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		select {
		case r := <-results:
			inflight--
			if r.err == nil {
				finish()
				return r.c, nil
			}
			ae := r.err.(*attemptError)
			switch {
			case ae.permanent:
				finish()
				return nil, ae.err
			case ae.auth:
				refusals++
				if refusals >= maxAuthRefusals {
					finish()
					return nil, ae.err
				}
			default:
				refusals = 0
			}
			if ctx.Err() == nil || last == nil {
				last = ae.err
			}
		case <-tick.C:
			if inflight < maxInflight {
				launch()
			}
		case <-ctx.Done():
			finish()
			if last == nil {
				last = ctx.Err()
			}
			return nil, fmt.Errorf("gave up waiting for SSH on %s after %d attempts in %s (%v): the server did not accept an SSH connection in time; check the VM's console log. Last error: %w",
				t.displayName(), attempts, time.Since(start).Round(time.Second), ctx.Err(), last)
		}
	}
}
