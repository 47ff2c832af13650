package sshx

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/devvm/devvm/launcher/sshx/sshtest"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func TestPinRecordsOneLineAndReplaces(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	tg := newTarget(t, srv)
	os.MkdirAll(filepath.Dir(tg.KnownHosts), 0o700)
	os.WriteFile(tg.KnownHosts, []byte("devvm-x ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\nother ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"), 0o600)

	key, err := Pin(testCtx(t), tg)
	if err != nil {
		t.Fatal(err)
	}
	if string(key.Marshal()) != string(srv.HostKey.PublicKey().Marshal()) {
		t.Error("Pin returned a key the server does not hold")
	}
	got, _ := os.ReadFile(tg.KnownHosts)
	if want := srv.KnownHostsLine("devvm-x"); string(got) != want {
		t.Errorf("known_hosts after Pin:\n%s\nwant:\n%s", got, want)
	}
	c, err := Dial(testCtx(t), tg)
	if err != nil {
		t.Fatalf("Dial after Pin: %v", err)
	}
	c.Close()

	// A new boot has new host keys: Pin again replaces the record.
	srv2 := sshtest.Start(t, sshtest.Options{})
	srv2.Authorize(tg.Key.Signer.PublicKey())
	tg.Addr = srv2.Addr
	if _, err := Pin(testCtx(t), tg); err != nil {
		t.Fatal(err)
	}
	got, _ = os.ReadFile(tg.KnownHosts)
	if want := srv2.KnownHostsLine("devvm-x"); string(got) != want {
		t.Errorf("known_hosts after second Pin:\n%s\nwant:\n%s", got, want)
	}
	if c, err := Dial(testCtx(t), tg); err != nil {
		t.Errorf("Dial after re-Pin: %v", err)
	} else {
		c.Close()
	}
}

func TestDialRefusesChangedHostKey(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	tg := newTarget(t, srv)
	if _, err := Pin(testCtx(t), tg); err != nil {
		t.Fatal(err)
	}
	oldFP := ssh.FingerprintSHA256(srv.HostKey.PublicKey())
	srv.Close()
	// Same port, new host key: what a man in the middle or an outside reboot looks like.
	srv2 := sshtest.Start(t, sshtest.Options{Addr: srv.Addr})
	srv2.Authorize(tg.Key.Signer.PublicKey())
	newFP := ssh.FingerprintSHA256(srv2.HostKey.PublicKey())

	_, err := Dial(testCtx(t), tg)
	var mm *HostKeyMismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("Dial = %v, want a HostKeyMismatchError", err)
	}
	for _, s := range []string{tg.KnownHosts, oldFP, newFP, "man-in-the-middle", "devvm reload"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
	// WaitReady must not retry through it.
	_, err = WaitReady(testCtx(t), tg, 10*time.Millisecond, false)
	if !errors.As(err, &mm) {
		t.Errorf("WaitReady = %v, want a HostKeyMismatchError", err)
	}
	if got := srv2.Commands(); len(got) != 0 {
		t.Errorf("commands ran on an unverified server: %q", got)
	}
}

func TestDialNeedsKnownHosts(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	tg := newTarget(t, srv)
	_, err := Dial(testCtx(t), tg)
	var hu *HostKeyUnknownError
	if !errors.As(err, &hu) || !strings.Contains(err.Error(), "devvm up") || !strings.Contains(err.Error(), tg.KnownHosts) {
		t.Errorf("Dial without known_hosts = %v, want a HostKeyUnknownError telling to run devvm up", err)
	}
	// A file that records other hosts only.
	os.MkdirAll(filepath.Dir(tg.KnownHosts), 0o700)
	os.WriteFile(tg.KnownHosts, []byte(srv.KnownHostsLine("devvm-other")), 0o600)
	if _, err := Dial(testCtx(t), tg); !errors.As(err, &hu) {
		t.Errorf("Dial with the key under another alias = %v, want HostKeyUnknownError", err)
	}
	tg.KnownHosts = ""
	if _, err := Dial(testCtx(t), tg); err == nil || !strings.Contains(err.Error(), "never connects without verifying") {
		t.Errorf("Dial with no known_hosts configured = %v", err)
	}
}

func TestHostKeyedKnownHosts(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	tg := newTarget(t, srv)
	tg.HostKeyAlias = ""
	os.MkdirAll(filepath.Dir(tg.KnownHosts), 0o700)
	// An OpenSSH-style file with a hashed entry for [127.0.0.1]:port.
	line := knownhosts.Line([]string{knownhosts.HashHostname(knownhosts.Normalize(srv.Addr))}, srv.HostKey.PublicKey())
	os.WriteFile(tg.KnownHosts, []byte("# comment\n"+line+"\n"), 0o600)
	c, err := Dial(testCtx(t), tg)
	if err != nil {
		t.Fatalf("Dial with a hashed host entry: %v", err)
	}
	c.Close()
}

func TestWaitReadyAuthRefusedFailsFast(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	tg := newTarget(t, srv)
	tg.Key, _ = EnsureUserKey(t.TempDir()) // a key srv does not know
	ctx := testCtx(t)
	_, err := WaitReady(ctx, tg, 10*time.Millisecond, true)
	if !errors.Is(err, ErrAuthRefused) {
		t.Fatalf("WaitReady = %v, want ErrAuthRefused", err)
	}
	if ctx.Err() != nil {
		t.Errorf("WaitReady waited for the whole timeout instead of failing fast")
	}
	for _, s := range []string{"authorized_keys", tg.Key.PublicPath, `"tester"`} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
	if _, err := os.Stat(tg.KnownHosts); err == nil {
		t.Error("host key recorded although authentication failed")
	}
}

func TestWaitReadyThroughBootRace(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{RefuseFirst: 5})
	tg := newTarget(t, srv)
	c, err := WaitReady(testCtx(t), tg, 10*time.Millisecond, true)
	if err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	defer c.Close()
	if n := srv.Refused(); n != 5 {
		t.Errorf("server dropped %d connections, want 5", n)
	}
	if st, err := c.Run(testCtx(t), "true", nil, nil, nil, false); err != nil || st != 0 {
		t.Errorf("Run after WaitReady = %d, %v", st, err)
	}
	// The pinned key now verifies strictly.
	if c2, err := WaitReady(testCtx(t), tg, 10*time.Millisecond, false); err != nil {
		t.Errorf("strict WaitReady after pinning: %v", err)
	} else {
		c2.Close()
	}
}

func TestWaitReadyUntilListening(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens: connections are refused, as before QEMU starts

	key, err := EnsureUserKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tg := Target{Addr: addr, User: "tester", Key: key, KnownHosts: filepath.Join(t.TempDir(), "known_hosts"), HostKeyAlias: "devvm-x"}
	type result struct {
		c   *Client
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := WaitReady(testCtx(t), tg, 10*time.Millisecond, true)
		done <- result{c, err}
	}()
	time.Sleep(200 * time.Millisecond) // let a few attempts be refused
	srv := sshtest.Start(t, sshtest.Options{Addr: addr, Authorized: []ssh.PublicKey{key.Signer.PublicKey()}})
	r := <-done
	if r.err != nil {
		t.Fatalf("WaitReady: %v", r.err)
	}
	r.c.Close()
	if got, _ := os.ReadFile(tg.KnownHosts); string(got) != srv.KnownHostsLine("devvm-x") {
		t.Errorf("pinned %q", got)
	}
}

func TestWaitReadyTimeoutMessage(t *testing.T) {
	// A port that accepts TCP and never speaks SSH, like a hung guest.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	key, _ := EnsureUserKey(t.TempDir())
	tg := Target{Addr: l.Addr().String(), User: "tester", Key: key, KnownHosts: filepath.Join(t.TempDir(), "kh"), HostKeyAlias: "devvm-x", HandshakeTimeout: time.Second}

	// One attempt: the handshake deadline applies even though TCP connected.
	_, err = Pin(testCtx(t), tg)
	if err == nil || !strings.Contains(err.Error(), "did not complete within 1s") {
		t.Errorf("Pin to a silent port = %v, want a handshake timeout", err)
	}

	tg.HandshakeTimeout = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err = WaitReady(ctx, tg, 10*time.Millisecond, true)
	if err == nil || !strings.Contains(err.Error(), "gave up waiting for SSH on devvm-x ("+tg.Addr+")") || errors.Unwrap(err) == nil {
		t.Errorf("WaitReady = %v, want a timeout error wrapping the last attempt's error", err)
	}
}

func TestProxyJump(t *testing.T) {
	jumpSrv := sshtest.Start(t, sshtest.Options{})
	vmSrv := sshtest.Start(t, sshtest.Options{})
	tg := newTarget(t, vmSrv)
	jumpSrv.Authorize(tg.Key.Signer.PublicKey())

	// The jump host is verified against a user-style known_hosts keyed by [host]:port.
	userKH := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(userKH, []byte(jumpSrv.KnownHostsLine(knownhosts.Normalize(jumpSrv.Addr))), 0o600)
	tg.Jump = &Target{Addr: jumpSrv.Addr, User: "hyper", Key: tg.Key, KnownHosts: userKH}

	if _, err := Pin(testCtx(t), tg); err != nil {
		t.Fatalf("Pin through the jump host: %v", err)
	}
	c, err := Dial(testCtx(t), tg)
	if err != nil {
		t.Fatalf("Dial through the jump host: %v", err)
	}
	var out strings.Builder
	if st, err := c.Run(testCtx(t), "echo via-jump", nil, &out, nil, false); err != nil || st != 0 || out.String() != "via-jump\n" {
		t.Errorf("Run = %d, %v, %q", st, err, out.String())
	}
	c.Close()
	if d := jumpSrv.Dialed(); len(d) < 2 || d[len(d)-1] != vmSrv.Addr {
		t.Errorf("jump host dialed %q, want %s", d, vmSrv.Addr)
	}
	if cmds := jumpSrv.Commands(); len(cmds) != 0 {
		t.Errorf("commands ran on the jump host: %q", cmds)
	}

	// A jump host with an unexpected key is refused.
	os.WriteFile(userKH, []byte(vmSrv.KnownHostsLine(knownhosts.Normalize(jumpSrv.Addr))), 0o600)
	_, err = Dial(testCtx(t), tg)
	var mm *HostKeyMismatchError
	if !errors.As(err, &mm) || !strings.Contains(err.Error(), "jump host") || mm.Pinned {
		t.Errorf("Dial with a forged jump host = %v, want a jump host HostKeyMismatchError", err)
	}
}

func TestKeepAliveClosesDeadConnection(t *testing.T) {
	srv, _, c := connected(t)
	c.KeepAlive(100*time.Millisecond, 3)
	// Answered keepalives keep the connection up across many intervals.
	if st, err := c.Run(testCtx(t), "sleep 0.5", nil, nil, nil, false); err != nil || st != 0 {
		t.Fatalf("Run with keepalives = %d, %v", st, err)
	}
	srv.SetFreeze(true)
	closed := make(chan error, 1)
	go func() { closed <- c.Wait() }()
	select {
	case <-closed:
	case <-testCtx(t).Done():
		t.Fatal("connection to an unresponsive server was not closed")
	}
	srv.SetFreeze(false)
}

func TestTargetValidation(t *testing.T) {
	_, err := Dial(testCtx(t), Target{Addr: "127.0.0.1:1", KnownHosts: "/x"})
	if err == nil || !strings.Contains(err.Error(), "needs both an address and a user") {
		t.Errorf("Dial without user = %v", err)
	}
	srv := sshtest.Start(t, sshtest.Options{})
	_, err = Pin(testCtx(t), Target{Addr: srv.Addr, User: "u", KnownHosts: filepath.Join(t.TempDir(), "kh")})
	if err == nil || !strings.Contains(err.Error(), "no SSH key or authentication method") {
		t.Errorf("Pin without keys = %v", err)
	}
}

// TestCipherPreference: Target.Ciphers decides the negotiated cipher (the
// client's first choice the server supports); nil keeps x/crypto's order.
func TestCipherPreference(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	tg := newTarget(t, srv)
	if _, err := Pin(testCtx(t), tg); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ciphers []string
		want    string
	}{
		{nil, ssh.CipherAES128GCM},
		{EmulatedCPUCiphers, ssh.CipherChaCha20Poly1305},
		{[]string{ssh.CipherAES256CTR}, ssh.CipherAES256CTR},
	} {
		tg.Ciphers = tc.ciphers
		c, err := Dial(testCtx(t), tg)
		if err != nil {
			t.Fatalf("Dial with ciphers %q: %v", tc.ciphers, err)
		}
		algs := c.Client.Conn.(ssh.AlgorithmsConnMetadata).Algorithms()
		c.Close()
		if algs.Write.Cipher != tc.want || algs.Read.Cipher != tc.want {
			t.Errorf("ciphers %q: negotiated %s/%s, want %s", tc.ciphers, algs.Write.Cipher, algs.Read.Cipher, tc.want)
		}
	}
}

// TestExtraKeysOffered: a guest that authorizes only another of the user's
// keys (its owner's, the hypervisor's) is logged in to with ExtraKeys, which
// go in the same publickey method as devvm's key: x/crypto tries each method
// type once, so a second publickey method would never be tried.
func TestExtraKeysOffered(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	tg := newTarget(t, srv)
	owner := tg.Key
	tg.Key, _ = EnsureUserKey(t.TempDir()) // devvm's key: not authorized
	tg.ExtraKeys = []*Key{owner}
	if _, err := WaitReady(testCtx(t), tg, 10*time.Millisecond, true); err != nil {
		t.Fatalf("login with an authorized extra key: %v", err)
	}
}

// TestDialRetriesDroppedConnections: a server that drops connections at once
// (sshd throttling unauthenticated ones, MaxStartups) is tried again a few
// times; one that keeps dropping them fails with the drop.
func TestDialRetriesDroppedConnections(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{RefuseFirst: 2})
	tg := newTarget(t, srv)
	if _, err := Pin(testCtx(t), tg); err != nil {
		t.Fatalf("pin through two dropped connections: %v", err)
	}
	srv2 := sshtest.Start(t, sshtest.Options{RefuseFirst: 100})
	tg2 := newTarget(t, srv2)
	if _, err := Pin(testCtx(t), tg2); err == nil || srv2.Refused() != dialAttempts {
		t.Errorf("a server that always drops: %v after %d connections (want %d tries)", err, srv2.Refused(), dialAttempts)
	}
}
