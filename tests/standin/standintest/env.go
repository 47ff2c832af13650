// Package standintest gives unit tests a host environment rooted in
// temporary directories with the stand-in guix (tests/standin/guix, which
// follows the real `guix` contract) in place of guix.
package standintest

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/hostenv"
)

// Dir is tests/standin.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), ".."))
}

// Env returns the environment and the stand-in's invocation log
// (DEVVM_STANDIN_LOG: one line per guix call).
func Env(t testing.TB) (*hostenv.Env, string) {
	t.Helper()
	base := t.TempDir()
	env := hostenv.FromOS()
	env.DataDir = filepath.Join(base, "data")
	env.StateDir = filepath.Join(base, "state")
	env.GCRootsDir = ""
	rt, err := os.MkdirTemp("", "dvu")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(rt) })
	env.RuntimeDir = rt
	log := filepath.Join(base, "guix.log")
	kernel := filepath.Join(base, "vmlinuz")
	os.WriteFile(kernel, []byte("kernel"), 0o644)
	t.Setenv("DEVVM_STANDIN_LOG", log)
	t.Setenv("DEVVM_STANDIN_STORE", filepath.Join(base, "store"))
	t.Setenv("DEVVM_TEST_KERNEL", kernel)
	t.Setenv("DEVVM_TEST_INITRD", kernel)
	guix := filepath.Join(Dir(), "guix")
	env.LookPath = func(name string) (string, error) {
		if name == "guix" {
			return guix, nil
		}
		return exec.LookPath(name)
	}
	env.Command = func(ctx context.Context, name string, args ...string) *exec.Cmd {
		if name == "guix" {
			name = guix
		}
		return exec.CommandContext(ctx, name, args...)
	}
	return env, log
}

// QuietUI is a progress UI that discards everything.
func QuietUI() *backend.UI { return &backend.UI{Err: io.Discard} }
