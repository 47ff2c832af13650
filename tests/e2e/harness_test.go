//go:build e2e

// Package e2e boots the real tiny test guest in real QEMU through devvm's
// own commands. The guest comes from tests/guest/build-guest.sh; the VM is
// "built" by the stand-in guix in tests/standin (a real Guix build needs
// substitutes this machine cannot reach), which prints a run-vm.sh of the
// exact shape real Guix 1.5.0 does.
//
// Every test boots the guix variant of the guest, which behaves like a Guix
// System 1.5.0 guest wherever devvm depends on it (no poweroff, Shepherd's
// halt, no ACPI handler, a real uid-1000 user whose sudo is found only
// through the login profile); TestBusyboxGuest boots the busybox variant
// (busybox poweroff, acpid, a uid-0 login behind a sudo shim), so devvm
// keeps working on both.
//
// Run: go test -tags e2e -count=1 -v ./tests/e2e/
package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

var (
	repoRoot string
	devvmBin string
	standin  string
	guestEnv []string // DEVVM_TEST_KERNEL / DEVVM_TEST_INITRD of the guix variant, the default
	// busyboxGuest is the same for the busybox variant: pass it to newWorld.
	busyboxGuest []string
	skipWhy      string
	sharedTmp    string
)

func TestMain(m *testing.M) {
	_, file, _, _ := runtime.Caller(0)
	repoRoot = filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	standin = filepath.Join(repoRoot, "tests", "standin")
	code := func() int {
		if os.Getuid() != 0 {
			skipWhy = "end-to-end tests need root (9p shares and the guest build)"
		} else if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
			skipWhy = "qemu-system-x86_64 is not installed (make test-setup installs it)"
		}
		if skipWhy == "" {
			var err error
			sharedTmp, err = os.MkdirTemp("", "devvm-e2e-")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(sharedTmp)
			devvmBin = filepath.Join(sharedTmp, "devvm")
			build := exec.Command("go", "build", "-o", devvmBin, "./cmd/devvm")
			build.Dir = repoRoot
			if out, err := build.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "building devvm: %v\n%s", err, out)
				return 1
			}
			if guestEnv, err = buildGuest("guix"); err == nil {
				busyboxGuest, err = buildGuest("busybox")
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// buildGuest runs build-guest.sh for a variant and returns its
// DEVVM_TEST_KERNEL= and DEVVM_TEST_INITRD= settings.
func buildGuest(variant string) ([]string, error) {
	g := exec.Command(filepath.Join(repoRoot, "tests", "guest", "build-guest.sh"))
	g.Env = append(os.Environ(), "DEVVM_TEST_GUEST="+variant)
	g.Stderr = os.Stderr
	out, err := g.Output()
	if err != nil {
		return nil, fmt.Errorf("building the %s test guest: %v", variant, err)
	}
	var env []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && (k == "KERNEL" || k == "INITRD") {
			env = append(env, "DEVVM_TEST_"+k+"="+v)
		}
	}
	if len(env) != 2 {
		return nil, fmt.Errorf("build-guest.sh (%s) printed %q, want KERNEL= and INITRD=", variant, out)
	}
	return env, nil
}

// guestUID owns every test checkout: the tests run as root, and devvm gives
// the guest user the uid of the checkout's owner (launcher/engine/init.go),
// so the guix guest's user can write its share as a real user's would.
const guestUID = 1000

// needVM skips (outside CI) or fails (in CI) when the tier cannot run.
func needVM(t testing.TB) {
	t.Helper()
	if skipWhy == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("end-to-end tier cannot run in CI: %s", skipWhy)
	}
	t.Skip(skipWhy)
}

// world is one user's devvm environment with one checkout.
type world struct {
	t        testing.TB
	home     string
	checkout string
	guixLog  string
	env      []string
}

// newWorld makes a home, XDG dirs and a checkout directory named name,
// runs `devvm init` there. extraEnv is added to devvm's environment (and
// overrides it: busyboxGuest selects the busybox guest).
func newWorld(t testing.TB, name string, extraEnv ...string) *world {
	needVM(t)
	base := t.TempDir()
	// A short runtime dir: QMP socket paths are limited to 107 bytes.
	rt, err := os.MkdirTemp("", "dvrt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(rt) })
	w := &world{t: t, home: filepath.Join(base, "home"), checkout: filepath.Join(base, name), guixLog: filepath.Join(base, "guix.log")}
	for _, d := range []string{w.home, w.checkout} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(w.checkout, guestUID, guestUID); err != nil {
		t.Fatal(err)
	}
	w.env = append(os.Environ(),
		"HOME="+w.home,
		"XDG_DATA_HOME="+filepath.Join(w.home, ".local/share"),
		"XDG_STATE_HOME="+filepath.Join(w.home, ".local/state"),
		"XDG_RUNTIME_DIR="+rt,
		"PATH="+standin+":"+os.Getenv("PATH"),
		"DEVVM_STANDIN_LOG="+w.guixLog,
		"DEVVM_STANDIN_STORE="+filepath.Join(sharedTmp, "store"),
	)
	w.env = append(w.env, guestEnv...)
	w.env = append(w.env, extraEnv...)
	w.ok("init")
	t.Cleanup(func() {
		// Never leave a VM behind, whatever the test did.
		w.run("destroy", "-f", "--yes")
	})
	return w
}

// setVmfile replaces a "key = value" line (or appends it) in the Vmfile.
func (w *world) setVmfile(lines ...string) {
	p := filepath.Join(w.checkout, "Vmfile")
	b, err := os.ReadFile(p)
	if err != nil {
		w.t.Fatal(err)
	}
	text := string(b)
	for _, l := range lines {
		key := strings.TrimSpace(strings.SplitN(l, "=", 2)[0])
		var out []string
		replaced := false
		for _, old := range strings.Split(text, "\n") {
			trim := strings.TrimLeft(old, "# ")
			if !replaced && strings.HasPrefix(trim, key+" ") && !strings.HasPrefix(strings.TrimSpace(old), "[") {
				out = append(out, l)
				replaced = true
				continue
			}
			out = append(out, old)
		}
		if !replaced {
			// Top-level keys must come before the first table.
			i := strings.Index(text, "\n[")
			if i < 0 {
				out = append(out, l)
			} else {
				text = text[:i+1] + l + "\n" + text[i+1:]
				continue
			}
		}
		text = strings.Join(out, "\n")
	}
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		w.t.Fatal(err)
	}
}

type result struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

func (w *world) cmd(args ...string) *exec.Cmd {
	c := exec.Command(devvmBin, args...)
	c.Dir = w.checkout
	c.Env = w.env
	return c
}

func (w *world) runIn(stdin []byte, args ...string) result {
	c := w.cmd(args...)
	var o, e bytes.Buffer
	c.Stdout, c.Stderr = &o, &e
	if stdin != nil {
		c.Stdin = bytes.NewReader(stdin)
	}
	start := time.Now()
	err := c.Run()
	r := result{stdout: o.String(), stderr: e.String(), took: time.Since(start)}
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			r.code = ee.ExitCode()
		} else {
			r.code = -1
			r.stderr += err.Error()
		}
	}
	return r
}

func (w *world) run(args ...string) result { return w.runIn(nil, args...) }

// ok runs devvm and fails the test unless it exits 0.
func (w *world) ok(args ...string) result {
	w.t.Helper()
	r := w.run(args...)
	if r.code != 0 {
		w.t.Fatalf("devvm %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// status returns `devvm status --json` for the only machine.
func (w *world) status() map[string]any {
	w.t.Helper()
	r := w.ok("status", "--json")
	var sts struct{ Machines []map[string]any }
	if err := json.Unmarshal([]byte(r.stdout), &sts); err != nil || len(sts.Machines) != 1 {
		w.t.Fatalf("status --json: %v: %q", err, r.stdout)
	}
	return sts.Machines[0]
}

// guixRuns counts stand-in guix invocations that built a VM.
func (w *world) guixRuns() int {
	b, err := os.ReadFile(w.guixLog)
	if err != nil {
		return 0
	}
	// `system vm -d` only evaluates (devvm checks the derivation first).
	return strings.Count(string(b), "system vm") - strings.Count(string(b), " vm -d ")
}

// processesWith lists pids whose command line contains s.
func processesWith(s string) []string {
	var pids []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err == nil && bytes.Contains(b, []byte(s)) {
			pids = append(pids, filepath.Base(d))
		}
	}
	return pids
}

// marker is the QEMU -name marker of the world's VM (the argv word after
// "-name"), as devvm computes it: it identifies this VM's processes only.
func (w *world) marker(name string) string {
	return "-name\x00" + w.vmState(name).Marker() + "\x00"
}

// sshPort is the SSH port in the VM's runtime record ("" before QEMU runs).
func (w *world) sshPort() string {
	b, err := os.ReadFile(filepath.Join(w.vmDir(vmName(w.checkout)), "record.json"))
	if err != nil {
		return ""
	}
	var rt struct {
		Port int `json:"ssh_port"`
	}
	if json.Unmarshal(b, &rt) != nil || rt.Port == 0 {
		return ""
	}
	return fmt.Sprint(rt.Port)
}
