package guix

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/devvm/devvm/launcher/hostenv"
)

// TestClassifyRecorded shapes every failure recorded from real guix 1.5.0
// (testdata/README says how they were recorded).
func TestClassifyRecorded(t *testing.T) {
	want := map[string]string{
		"config-error.syntax.exit1.stderr":            FailConfig,
		"config-error.unbound-top-level.exit1.stderr": FailConfig,
		"config-error.unbound-variable.exit1.stderr":  FailConfig,
		"manifest.unknown-package.exit1.stderr":       FailPackage,
		"packages.unknown-package.exit1.stderr":       FailPackage,
		"missing-authorized-keys.exit1.stderr":        FailConfig,
		"missing-config.exit1.stderr":                 FailConfig,
		"no-daemon.exit1.stderr":                      FailNoDaemon,
		"no-daemon.stale-socket.exit1.stderr":         FailNoDaemon,
		"offline.exit1.stderr":                        FailOffline,
		"share-twice.exit1.stderr":                    FailDuplicate,
	}
	files, _ := filepath.Glob("testdata/*.exit1.stderr")
	if len(files) != len(want) {
		t.Errorf("testdata has %d failure recordings, the test knows %d: add the new ones", len(files), len(want))
	}
	for name, kind := range want {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		tl := newTail(30)
		tl.add(b)
		tl.flush()
		e := Classify(tl.lines(), 1, "dev-vm.scm", "channels.scm")
		if e.Kind != kind {
			t.Errorf("%s: kind %s, want %s", name, e.Kind, kind)
		}
		if e.Hint == "" || len(e.Tail) == 0 {
			t.Errorf("%s: no hint or tail: %+v", name, e)
		}
		msg := e.Error()
		if !strings.Contains(msg, "hint:") || !strings.Contains(msg, "last lines from guix") {
			t.Errorf("%s: error text lacks the tail or hint:\n%s", name, msg)
		}
	}
}

func TestCheckPinned(t *testing.T) {
	dir := t.TempDir()
	full := "230aa373f315f247852ee07dff34146e9b480aec"
	cases := []struct {
		name, src, wantErr string
	}{
		{"full", `(list (channel (name 'guix) (url "https://x") (branch "master") (commit "` + full + `")))`, ""},
		{"branch", `(list (channel (name 'guix) (url "https://x") (branch "master")))`, `follows branch "master"`},
		{"short", `(list (channel (name 'guix) (url "https://x") (commit "230aa37")))`, "short hash"},
		{"tag", `(list (channel (name 'guix) (url "https://x") (commit "v1.5.0")))`, "tag or branch"},
		{"nocommit", `(list (channel (name 'guix) (url #f) (branch #f)))`, "has no commit"},
		{"second", `(list (channel (name 'guix) (commit "` + full + `")) (channel (name 'nonguix) (branch "master")))`, "channel 'nonguix"},
		{"empty", `;; nothing`, "no (channel"},
		{"broken", `(list (channel (name 'guix)`, "never closed"},
		{"comments", "#| (channel (branch \"x\")) |#\n(list #;(channel (branch \"y\")) (channel (name 'guix) (commit \"" + full + "\")))", ""},
	}
	for _, c := range cases {
		p := filepath.Join(dir, c.name+".scm")
		os.WriteFile(p, []byte(c.src), 0o644)
		err := CheckPinned(p)
		if c.wantErr == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("%s: error %v, want it to mention %q", c.name, err, c.wantErr)
		}
		if err != nil && c.name != "broken" && c.name != "empty" && !strings.Contains(err.Error(), "guix describe -f channels") {
			t.Errorf("%s: error does not say how to pin: %v", c.name, err)
		}
	}
	if err := CheckPinned(filepath.Join(dir, "missing.scm")); err == nil || !strings.Contains(err.Error(), "devvm init") {
		t.Errorf("missing file: %v", err)
	}
}

func writeInputs(t *testing.T) (string, Inputs) {
	dir := t.TempDir()
	files := map[string]string{
		"dev-vm.scm":             `(operating-system (packages (load "pkgs.scm")) (authorized-keys (local-file ".devvm/authorized_keys" "k")) (file-systems (list "/dev/vda1" "/etc")))`,
		"pkgs.scm":               `(specifications->packages (list "git"))`,
		"channels.scm":           `(list (channel (name 'guix) (commit "230aa373f315f247852ee07dff34146e9b480aec")))`,
		"manifest.scm":           `(specifications->manifest '("gcc-toolchain"))`,
		".devvm/authorized_keys": "ssh-ed25519 AAAA devvm\n",
		"unrelated.txt":          "not an input",
	}
	for name, text := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, Inputs{Config: filepath.Join(dir, "dev-vm.scm"), Channels: filepath.Join(dir, "channels.scm"),
		Manifest: filepath.Join(dir, "manifest.scm"), Settings: map[string]string{"name": "qbuf", "shares": "share0:/mnt/qbuf"}}
}

func TestKeyStableAndSensitive(t *testing.T) {
	dir, in := writeInputs(t)
	k1, files, err := Key(in)
	if err != nil {
		t.Fatal(err)
	}
	k2, _, _ := Key(in)
	if k1 != k2 || len(k1) != 64 {
		t.Fatalf("key not stable: %s %s", k1, k2)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	got := strings.Join(names, ",")
	for _, want := range []string{"dev-vm.scm", "pkgs.scm", "authorized_keys", "channels.scm", "manifest.scm"} {
		if !strings.Contains(got, want) {
			t.Errorf("key did not hash %s (hashed %s)", want, got)
		}
	}
	if strings.Contains(got, "unrelated.txt") || strings.Contains(got, "passwd") {
		t.Errorf("key hashed files that are no inputs: %s", got)
	}
	// Touching without changing content keeps the key.
	now := time.Now().Add(time.Hour)
	os.Chtimes(in.Config, now, now)
	if k, _, _ := Key(in); k != k1 {
		t.Error("mtime changed the key")
	}
	// Every input changes it.
	for _, f := range []string{"dev-vm.scm", "pkgs.scm", ".devvm/authorized_keys", "channels.scm", "manifest.scm"} {
		p := filepath.Join(dir, f)
		old, _ := os.ReadFile(p)
		os.WriteFile(p, append(old, ' '), 0o644)
		if k, _, _ := Key(in); k == k1 {
			t.Errorf("changing %s did not change the key", f)
		}
		os.WriteFile(p, old, 0o644)
	}
	in2 := in
	in2.Settings = map[string]string{"name": "other", "shares": "share0:/mnt/qbuf"}
	if k, _, _ := Key(in2); k == k1 {
		t.Error("a setting did not change the key")
	}
	os.WriteFile(filepath.Join(dir, "unrelated.txt"), []byte("changed"), 0o644)
	if k, _, _ := Key(in); k != k1 {
		t.Error("an unrelated file changed the key")
	}
	os.Remove(in.Manifest)
	if _, _, err := Key(in); err == nil || !strings.Contains(err.Error(), "manifest") {
		t.Errorf("missing manifest: %v", err)
	}
}

// fakeGuix writes a shell script standing in for guix in these unit tests
// (the named stand-in for end-to-end tests is tests/standin/guix).
func fakeGuix(t *testing.T, body string) (*Runner, string) {
	dir := t.TempDir()
	p := filepath.Join(dir, "guix")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	env := hostenv.FromOS()
	return &Runner{Env: env, Guix: p, Timeout: 20 * time.Second}, dir
}

func request(dir string) Request {
	return Request{Dir: dir, Config: filepath.Join(dir, "dev-vm.scm"), Channels: filepath.Join(dir, "channels.scm"),
		Root: filepath.Join(dir, "gcroots", "run-vm"), Log: filepath.Join(dir, "build.log")}
}

func TestRunnerSuccess(t *testing.T) {
	// Like real guix: progress on stderr, the path alone on stdout, -r honoured.
	r, dir := fakeGuix(t, `
echo "building /gnu/store/x-run-vm.sh.drv..." >&2
for a; do root=$prev_r; [ "$prev" = "-r" ] && R=$a; prev=$a; done
out=/tmp/devvm-unit-$$-run-vm.sh
touch "$out"
echo "$out"
ln -s "$out" "$R"
`)
	os.MkdirAll(filepath.Join(dir, "gcroots"), 0o755)
	// A stale root must be removed first.
	os.Symlink("/nonexistent", filepath.Join(dir, "gcroots", "run-vm"))
	var progress strings.Builder
	r.Progress = &progress
	res, err := r.SystemVM(context.Background(), request(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(res.RunVM)
	if !strings.HasSuffix(res.RunVM, "-run-vm.sh") || !strings.Contains(progress.String(), "building") {
		t.Errorf("result %+v, progress %q", res, progress.String())
	}
	want := []string{r.Guix, "time-machine", "-C", filepath.Join(dir, "channels.scm"), "--", "system", "vm", "-r", filepath.Join(dir, "gcroots", "run-vm"), filepath.Join(dir, "dev-vm.scm")}
	if strings.Join(res.Argv, " ") != strings.Join(want, " ") {
		t.Errorf("argv %q\nwant %q", res.Argv, want)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "build.log"))
	if !strings.Contains(string(log), "building") {
		t.Errorf("log lacks guix's stderr: %q", log)
	}
}

func TestRunnerFailureShaped(t *testing.T) {
	recorded, _ := filepath.Abs("testdata/no-daemon.exit1.stderr")
	r, dir := fakeGuix(t, "cat "+recorded+" >&2; exit 1")
	_, err := r.SystemVM(context.Background(), request(dir))
	var be *BuildError
	if !errors.As(err, &be) || be.Kind != FailNoDaemon || be.Log == "" {
		t.Fatalf("got %v", err)
	}
}

func TestRunnerPTY(t *testing.T) {
	// Under a pty guix sees a terminal on stderr and prints progress bars;
	// stdout stays a pipe so the path is not mixed with progress.
	r, dir := fakeGuix(t, `
if [ -t 2 ]; then echo "stderr is a tty" >&2; fi
if [ -t 1 ]; then echo "stdout must not be a tty" >&2; exit 3; fi
echo /gnu/store/abc-run-vm.sh
exit 0`)
	r.Terminal = true
	var progress strings.Builder
	r.Progress = &progress
	_, err := r.SystemVM(context.Background(), request(dir))
	// The fake does not create the GC root: that must be an error.
	var be *BuildError
	if !errors.As(err, &be) || !strings.Contains(be.Msg, "GC root") {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(progress.String(), "stderr is a tty") {
		t.Errorf("guix did not run under a pty: %q", progress.String())
	}
}

func TestRunnerSubstituteStall(t *testing.T) {
	r, dir := fakeGuix(t, `while :; do echo "substitute: looking for substitutes on 'https://bordeaux.guix.gnu.org'...   0.0%" >&2; sleep 0.2; done`)
	r.StallTimeout = 1500 * time.Millisecond
	_, err := r.SystemVM(context.Background(), request(dir))
	var be *BuildError
	if !errors.As(err, &be) || be.Kind != FailSubstitutes {
		t.Fatalf("got %v", err)
	}
	if len(be.Tail) != 1 {
		t.Errorf("the endless progress line should collapse to one tail line, got %q", be.Tail)
	}
}

func TestRunnerTimeoutKillsGroup(t *testing.T) {
	r, dir := fakeGuix(t, `sleep 300 & sleep 300`)
	r.Timeout = time.Second
	_, err := r.SystemVM(context.Background(), request(dir))
	var be *BuildError
	if !errors.As(err, &be) || be.Kind != FailTimeout || !strings.Contains(be.Hint, "build_timeout") {
		t.Fatalf("got %v", err)
	}
	out, _ := exec.Command("pgrep", "-f", "sleep 300").Output()
	if len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("guix's children survived the timeout: %s", out)
	}
}

// TestRunnerTimeoutKillsStubbornGroup: guix and a child that ignore SIGTERM
// are SIGKILLed after the grace period, and none is left when SystemVM
// returns.
func TestRunnerTimeoutKillsStubbornGroup(t *testing.T) {
	r, dir := fakeGuix(t, `trap '' TERM; sleep 301 & sleep 301`)
	r.Timeout = time.Second
	_, err := r.SystemVM(context.Background(), request(dir))
	var be *BuildError
	if !errors.As(err, &be) || be.Kind != FailTimeout {
		t.Fatalf("got %v", err)
	}
	out, _ := exec.Command("pgrep", "-f", "sleep 301").Output()
	if len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("processes ignoring SIGTERM survived the timeout: %s", out)
	}
}

func TestRunnerNoGuix(t *testing.T) {
	r := &Runner{Env: hostenv.FromOS(), Guix: "/nonexistent/guix"}
	_, err := r.SystemVM(context.Background(), request(t.TempDir()))
	var be *BuildError
	if !errors.As(err, &be) || be.Kind != FailNoGuix {
		t.Fatalf("got %v", err)
	}
}
