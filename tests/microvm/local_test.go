//go:build e2e

package microvmtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/devvm/devvm/launcher/backend"
	devstate "github.com/devvm/devvm/launcher/state"
)

// TestLocal runs a microvm.nix VM on this machine: nix build of the declared
// runner (GC root in the state dir's vm1/current), bin/microvm-run detached, SSH through
// the runner's forwardPorts, microvm-shutdown, rollback, destroy.
func TestLocal(t *testing.T) {
	w := newWorld(t)
	for _, kv := range w.env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	t.Setenv("PATH", w.standin+":"+os.Getenv("PATH"))
	port := freePort(t)
	w.machines["vm1"] = map[string]any{"user": "dev", "authorized_keys": []string{w.devvmKey()}, "ssh_port": port, "version": "1"}
	w.machines["arm"] = map[string]any{"user": "dev", "ssh_port": freePort(t), "system": "aarch64-linux"}
	os.MkdirAll(w.checkout, 0o755)
	w.writeFlake(w.checkout)
	// vm1's port is the host port of its forward (what `ssh -p` takes), arm's the default.
	os.WriteFile(filepath.Join(w.checkout, "Vmfile"), []byte(fmt.Sprintf("name = \"local\"\nbackend = \"microvm\"\n\n[ssh]\nuser = \"dev\"\n\n[microvm.machines.vm1]\naddress = \"127.0.0.1\"\nport = %d\n\n[microvm.machines.arm]\naddress = \"127.0.0.1\"\n", port)), 0o644)
	b := w.open(w.checkout)
	ctx := context.Background()
	state := devstate.New(w.checkout, "vm1", w.hostEnv.Dirs()).Dir()
	link := func(n string) string { s, _ := os.Readlink(filepath.Join(state, n)); return s }

	// Checked before any build: a guest for another system.
	err := b.Up(ctx, []string{"arm"}, backend.UpOptions{Timeout: 30 * time.Second})
	out := w.ui.Take()
	if err == nil || !strings.Contains(err.Error(), "built for aarch64-linux") || strings.Contains(out, " build ") {
		t.Errorf("up arm: %v\n%s", err, out)
	}

	if err := b.Up(ctx, []string{"vm1"}, backend.UpOptions{Timeout: 90 * time.Second}); err != nil {
		t.Fatalf("up: %v", err)
	}
	out = w.ui.Take()
	nix := "$ nix --extra-experimental-features 'nix-command flakes' "
	for _, want := range []string{nix + "eval --json '" + w.checkout + "#nixosConfigurations.vm1.config' --apply",
		nix + "build -o " + filepath.Join(state, "current") + " '" + w.checkout + "#nixosConfigurations.vm1.config.microvm.declaredRunner'",
		nix + "eval --json '" + w.checkout + "#nixosConfigurations.vm1.config.microvm.forwardPorts'",
		fmt.Sprintf("SSH forwarded from 127.0.0.1:%d", port), `VM "vm1" is ready`} {
		if !strings.Contains(out, want) {
			t.Errorf("up output lacks %q", want)
		}
	}
	if got := sshRun(t, b, "vm1", "whoami"); got != "dev" {
		t.Errorf("whoami = %q", got)
	}
	st := statusOf(t, b)["vm1"]
	if st.State != backend.Running || st.SSH != fmt.Sprintf("127.0.0.1:%d", port) || st.PID == 0 {
		t.Errorf("status: %+v", st)
	}
	first := link("current")

	// A change to the VM's config: the new build makes the running VM outdated.
	w.machines["vm1"]["version"] = "2"
	w.writeFlake(w.checkout)
	if err := b.Build(ctx, backend.BuildOptions{}); err != nil {
		t.Fatalf("build: %v", err)
	}
	if s := statusOf(t, b)["vm1"]; s.State != backend.Running || !s.Outdated || link("old") != first {
		t.Errorf("after build: %+v, old %q (want %q)", s, link("old"), first)
	}
	if err := b.Restart(ctx, []string{"vm1"}); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if s := statusOf(t, b)["vm1"]; s.State != backend.Running || s.BuildKey != filepath.Base(link("current")) {
		t.Errorf("after restart: %+v", s)
	}
	if out := w.ui.Take(); !strings.Contains(out, "halted (microvm-shutdown)") {
		t.Errorf("restart did not halt with microvm-shutdown:\n%s", out)
	}

	if err := b.Rollback(ctx, []string{"vm1"}); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	if link("current") != first {
		t.Errorf("rollback: current %q, want %q", link("current"), first)
	}
	if s := statusOf(t, b)["vm1"]; s.State != backend.Running || s.BuildKey != filepath.Base(first) {
		t.Errorf("after rollback: %+v", s)
	}
	var logs strings.Builder
	if err := b.Logs(ctx, "vm1", backend.LogOptions{}, &logs); err != nil || !strings.Contains(logs.String(), "devvm-guest: ready") {
		t.Errorf("logs: %v\n%s", err, logs.String())
	}

	if err := b.Halt(ctx, nil, backend.HaltOptions{}); err != nil {
		t.Fatalf("halt: %v", err)
	}
	if s := statusOf(t, b)["vm1"]; s.State != backend.Stopped {
		t.Errorf("after halt: %+v", s)
	}
	if err := b.Destroy(ctx, nil, backend.DestroyOptions{GC: true}); err != nil {
		t.Fatalf("destroy: %v", err)
	}
	if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the state of vm1 survived destroy: %v", err)
	}
	if _, err := os.Stat(first); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the runner %s survived destroy --gc: %v", first, err)
	}
}
