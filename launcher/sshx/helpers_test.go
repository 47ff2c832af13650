package sshx

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/devvm/devvm/launcher/sshx/sshtest"
)

// need skips the test when tool is missing, except in CI where it fails.
func need(t testing.TB, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI: %v", tool, err)
		}
		t.Skipf("%s not installed", tool)
	}
	return p
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newTarget returns a Target for srv with a fresh user key (authorized on srv) and a
// not-yet-pinned known_hosts path.
func newTarget(t testing.TB, srv *sshtest.Server) Target {
	t.Helper()
	dir := t.TempDir()
	key, err := EnsureUserKey(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	srv.Authorize(key.Signer.PublicKey())
	return Target{
		Addr:         srv.Addr,
		User:         "tester",
		Key:          key,
		KnownHosts:   filepath.Join(dir, "vm", "known_hosts"),
		HostKeyAlias: "devvm-x",
	}
}

// connected starts a server, pins it and returns a client.
func connected(t testing.TB) (*sshtest.Server, Target, *Client) {
	t.Helper()
	srv := sshtest.Start(t, sshtest.Options{})
	tg := newTarget(t, srv)
	if _, err := Pin(testCtx(t), tg); err != nil {
		t.Fatal(err)
	}
	c, err := Dial(testCtx(t), tg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return srv, tg, c
}
