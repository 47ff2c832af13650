package engine

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/state"
	"github.com/devvm/devvm/launcher/vmfile"
)

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// testEnv is a host environment rooted in temp dirs, with the stand-in
// guix (tests/standin/guix, which follows the real contract) on PATH.
func testEnv(t testing.TB) (*hostenv.Env, string) {
	t.Helper()
	base := t.TempDir()
	env := hostenv.FromOS()
	env.DataDir = filepath.Join(base, "data")
	env.StateDir = filepath.Join(base, "state")
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
	standin := filepath.Join(repoRoot(), "tests", "standin")
	env.LookPath = func(name string) (string, error) {
		if name == "guix" {
			return filepath.Join(standin, "guix"), nil
		}
		return exec.LookPath(name)
	}
	env.Command = func(ctx context.Context, name string, args ...string) *exec.Cmd {
		if name == "guix" {
			name = filepath.Join(standin, "guix")
		}
		return exec.CommandContext(ctx, name, args...)
	}
	return env, log
}

func quietUI() *UI { return &UI{Err: io.Discard} }

func newCheckout(t testing.TB, env *hostenv.Env, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "qbuf")
	os.MkdirAll(dir, 0o755)
	for name, text := range files {
		os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644)
	}
	if err := Init(context.Background(), env, quietUI(), InitOptions{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// guixRuns counts the builds (`system vm` without -d) guix ran.
func guixRuns(log string) int {
	n := 0
	b, _ := os.ReadFile(log)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "system vm") && !strings.Contains(l, " -d ") {
			n++
		}
	}
	return n
}

// guixEvals counts the evaluations (`system vm -d`) guix ran.
func guixEvals(log string) int {
	b, _ := os.ReadFile(log)
	return strings.Count(string(b), " vm -d ")
}

func TestInit(t *testing.T) {
	env, _ := testEnv(t)
	dir := newCheckout(t, env, map[string]string{
		"manifest.scm": `(specifications->manifest '("cmake"))`,
		".gitignore":   "build/",
	})
	vf, err := vmfile.Load(dir)
	if err != nil {
		t.Fatalf("the Vmfile init wrote does not load: %v", err)
	}
	if vf.Name != "qbuf" || vf.Shares[0].Guest != "/mnt/qbuf" || vf.SSH.Port != 10022 || vf.Guix.Manifest != "manifest.scm" {
		t.Errorf("init's Vmfile: %+v", vf)
	}
	// A plain operating-system: the contract is the wrapper's, at build time.
	cfg, _ := os.ReadFile(filepath.Join(dir, "dev-vm.scm"))
	for _, want := range []string{"(operating-system", `(password-authentication? #f)`, "%qemu-static-networking"} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("dev-vm.scm lacks %s", want)
		}
	}
	for _, bad := range []string{"authorized", "share0", "specifications->packages"} {
		if strings.Contains(string(cfg), bad) {
			t.Errorf("dev-vm.scm has %s (the wrapper's job, or the manifest's)", bad)
		}
	}
	ch, _ := os.ReadFile(filepath.Join(dir, "channels.scm"))
	if !strings.Contains(string(ch), "230aa373f315f247852ee07dff34146e9b480aec") {
		t.Errorf("channels.scm is not the pinned default:\n%s", ch)
	}
	gi, _ := os.ReadFile(filepath.Join(dir, ".gitignore"))
	if !strings.HasPrefix(string(gi), "build/\n") || strings.Count(string(gi), "/.devvm/") != 1 {
		t.Errorf(".gitignore: %q", gi)
	}

	// A second init keeps the user's edits; --force rewrites.
	os.WriteFile(filepath.Join(dir, "dev-vm.scm"), []byte(";; mine\n"), 0o644)
	if err := Init(context.Background(), env, quietUI(), InitOptions{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "dev-vm.scm")); string(b) != ";; mine\n" {
		t.Error("init overwrote dev-vm.scm without --force")
	}
	if gi2, _ := os.ReadFile(filepath.Join(dir, ".gitignore")); string(gi2) != string(gi) {
		t.Errorf(".gitignore changed again: %q", gi2)
	}
	if err := Init(context.Background(), env, quietUI(), InitOptions{Dir: dir, Force: true}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "dev-vm.scm")); string(b) == ";; mine\n" {
		t.Error("--force did not rewrite dev-vm.scm")
	}
	if err := Init(context.Background(), env, quietUI(), InitOptions{Dir: dir, Template: "nope"}); err == nil || !strings.Contains(err.Error(), "default") {
		t.Errorf("unknown template: %v", err)
	}
}

func TestBuildCache(t *testing.T) {
	env, log := testEnv(t)
	dir := newCheckout(t, env, nil)
	vf, err := vmfile.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	g := NewGuix(vf, env, quietUI())
	ctx := context.Background()
	build := func(opts backend.BuildOptions) {
		t.Helper()
		if err := g.Build(ctx, opts); err != nil {
			t.Fatal(err)
		}
	}
	build(backend.BuildOptions{})
	if n := guixRuns(log); n != 1 {
		t.Fatalf("first build ran guix %d times", n)
	}
	build(backend.BuildOptions{})
	if n := guixRuns(log); n != 1 {
		t.Errorf("unchanged build ran guix again (%d runs)", n)
	}
	// An edit that leaves the OS as it was (a comment) costs one
	// evaluation (guix system vm -d), not a build.
	cfg := filepath.Join(dir, "dev-vm.scm")
	old, _ := os.ReadFile(cfg)
	evals := guixEvals(log)
	os.WriteFile(cfg, append(old, []byte("\n;; changed\n")...), 0o644)
	build(backend.BuildOptions{})
	if n, e := guixRuns(log), guixEvals(log); n != 1 || e != evals+1 {
		t.Errorf("comment edit: %d builds (want 1), %d evaluations (want %d)", n, e, evals+1)
	}
	build(backend.BuildOptions{})
	if n, e := guixRuns(log), guixEvals(log); n != 1 || e != evals+1 {
		t.Errorf("unchanged after the comment edit: %d builds, %d evaluations: want no guix call", n, e)
	}
	// Changing the config rebuilds.
	os.WriteFile(cfg, []byte(strings.Replace(string(old), `(timezone "Etc/UTC")`, `(timezone "Europe/Paris")`, 1)), 0o644)
	build(backend.BuildOptions{})
	if n := guixRuns(log); n != 2 {
		t.Errorf("changed config: %d runs, want 2", n)
	}
	build(backend.BuildOptions{Rebuild: true})
	if n := guixRuns(log); n != 3 {
		t.Errorf("--rebuild: %d runs, want 3", n)
	}
	// A lost GC root forces a rebuild (the store item may be gone).
	var rec BuildRecord
	readJSON(t, g.VM.BuildRecord(), &rec)
	os.Remove(rec.Root)
	build(backend.BuildOptions{})
	if n := guixRuns(log); n != 4 {
		t.Errorf("missing GC root: %d runs, want 4", n)
	}
	readJSON(t, g.VM.BuildRecord(), &rec)
	if target, err := os.Readlink(rec.Root); err != nil || target != rec.RunVM {
		t.Errorf("GC root %s -> %s (%v), want %s", rec.Root, target, err, rec.RunVM)
	}
}

func TestBuildRefusesUnpinnedChannels(t *testing.T) {
	env, log := testEnv(t)
	dir := newCheckout(t, env, nil)
	os.WriteFile(filepath.Join(dir, "channels.scm"), []byte(`(list (channel (name 'guix) (url "https://git.guix.gnu.org/guix.git") (branch "master")))`), 0o644)
	vf, _ := vmfile.Load(dir)
	err := NewGuix(vf, env, quietUI()).Build(context.Background(), backend.BuildOptions{})
	if err == nil || !strings.Contains(err.Error(), "every run") || !strings.Contains(err.Error(), "guix describe -f channels") {
		t.Fatalf("branch pin: %v", err)
	}
	if guixRuns(log) != 0 {
		t.Error("guix ran for an unpinned channels file")
	}
}

func TestBuildMissingConfig(t *testing.T) {
	env, _ := testEnv(t)
	dir := newCheckout(t, env, nil)
	os.Remove(filepath.Join(dir, "dev-vm.scm"))
	vf, _ := vmfile.Load(dir)
	err := NewGuix(vf, env, quietUI()).Build(context.Background(), backend.BuildOptions{})
	if err == nil || !strings.Contains(err.Error(), "guix.config") || !strings.Contains(err.Error(), "devvm init") {
		t.Fatalf("missing config: %v", err)
	}
}

func TestDoctor(t *testing.T) {
	env, _ := testEnv(t)
	env.LookPath = func(string) (string, error) { return "", exec.ErrNotFound }
	env.KVMDevice = filepath.Join(t.TempDir(), "no-kvm")
	checks := Doctor(context.Background(), env, t.TempDir(), nil, os.ErrNotExist)
	byName := map[string]Check{}
	for _, c := range checks {
		byName[c.Name] = c
		if !c.OK && c.Fix == "" {
			t.Errorf("%s fails without a fix hint", c.Name)
		}
	}
	for _, name := range []string{"vmfile", "guix"} {
		if c := byName[name]; c.OK || !c.Required {
			t.Errorf("%s: %+v, want a required failure", name, c)
		}
	}
	if c := byName["kvm"]; c.OK || c.Required || !strings.Contains(c.Detail, "TCG") {
		t.Errorf("kvm: %+v", c)
	}
}

func TestKVMNeedsCPUFlag(t *testing.T) {
	env := hostenv.FromOS()
	dir := t.TempDir()
	env.KVMDevice = filepath.Join(dir, "kvm")
	os.WriteFile(env.KVMDevice, nil, 0o666)
	env.CPUInfo = filepath.Join(dir, "cpuinfo")
	os.WriteFile(env.CPUInfo, []byte("processor\t: 0\nflags\t\t: fpu sse2 hypervisor\n"), 0o644)
	if k := env.KVM(); k.Usable || !strings.Contains(k.Reason, "vmx") {
		t.Errorf("no vmx flag: %+v", k)
	}
	os.WriteFile(env.CPUInfo, []byte("flags\t\t: fpu vmx sse2\n"), 0o644)
	if k := env.KVM(); !k.Usable {
		t.Errorf("vmx flag and accessible device: %+v", k)
	}
	os.Chmod(env.KVMDevice, 0)
	if os.Getuid() != 0 {
		if k := env.KVM(); k.Usable {
			t.Error("inaccessible device counted as usable")
		}
	}
	os.Remove(env.KVMDevice)
	if k := env.KVM(); k.Usable || !strings.Contains(k.Reason, "does not exist") {
		t.Errorf("missing device: %+v", k)
	}
}

// BenchmarkBuildCached measures an unchanged `devvm build`: it must not run
// guix and should cost devvm well under 50 ms (real `guix system vm` spends
// ~13 s just evaluating a dev config).
func BenchmarkBuildCached(b *testing.B) {
	env, log := testEnv(b)
	dir := newCheckout(b, env, nil)
	vf, _ := vmfile.Load(dir)
	g := NewGuix(vf, env, quietUI())
	if err := g.Build(context.Background(), backend.BuildOptions{}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := g.Build(context.Background(), backend.BuildOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if n := guixRuns(log); n != 1 {
		b.Fatalf("cached builds ran guix (%d runs in all)", n)
	}
}

// BenchmarkBuildStandin is the same build with guix run every time (the
// stand-in's own cost, a floor for any real guix run).
func BenchmarkBuildStandin(b *testing.B) {
	env, _ := testEnv(b)
	dir := newCheckout(b, env, nil)
	vf, _ := vmfile.Load(dir)
	g := NewGuix(vf, env, quietUI())
	for i := 0; i < b.N; i++ {
		if err := g.Build(context.Background(), backend.BuildOptions{Rebuild: true}); err != nil {
			b.Fatal(err)
		}
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	if ok, err := state.ReadJSON(path, v); !ok || err != nil {
		t.Fatalf("reading %s: %v (exists: %v)", path, err, ok)
	}
}

func TestGCRemovesOldBuilds(t *testing.T) {
	env, _ := testEnv(t)
	dir := newCheckout(t, env, nil)
	vf, _ := vmfile.Load(dir)
	g := NewGuix(vf, env, quietUI())
	ctx := context.Background()
	if err := g.Build(ctx, backend.BuildOptions{}); err != nil {
		t.Fatal(err)
	}
	var old BuildRecord
	readJSON(t, g.VM.BuildRecord(), &old)
	cfg := filepath.Join(dir, "dev-vm.scm")
	text, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(text), `(timezone "Etc/UTC")`, `(timezone "Europe/Paris")`, 1)), 0o644)
	if err := g.Build(ctx, backend.BuildOptions{}); err != nil {
		t.Fatal(err)
	}
	var cur BuildRecord
	readJSON(t, g.VM.BuildRecord(), &cur)

	rep, err := g.GC(ctx, backend.GCOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Roots) != 1 || rep.Roots[0] != old.Root || rep.StoreGC {
		t.Fatalf("dry run: %+v, want only %s", rep, old.Root)
	}
	if _, err := os.Lstat(old.Root); err != nil {
		t.Fatal("dry run removed a root")
	}
	rep, err = g.GC(ctx, backend.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.StoreGC || rep.FreedBytes <= 0 {
		t.Errorf("store GC: %+v", rep)
	}
	if _, err := os.Lstat(old.Root); !os.IsNotExist(err) {
		t.Error("the old build's root survived gc")
	}
	if _, err := os.Stat(old.RunVM); !os.IsNotExist(err) {
		t.Error("the old build's script survived the store GC")
	}
	if _, err := os.Stat(cur.RunVM); err != nil {
		t.Errorf("gc collected the current build: %v", err)
	}
}
