package guixvm_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/backends"
	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/machine"
	"github.com/devvm/devvm/launcher/project"
	"github.com/devvm/devvm/launcher/state"
	"github.com/devvm/devvm/launcher/vmfile"
	"github.com/devvm/devvm/tests/standin/standintest"
)

// testEnv is a host environment rooted in temp dirs, with the stand-in guix.
func testEnv(t testing.TB) (*hostenv.Env, string) { return standintest.Env(t) }

func quietUI() *backend.UI { return standintest.QuietUI() }

func newCheckout(t testing.TB, env *hostenv.Env, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "qbuf")
	os.MkdirAll(dir, 0o755)
	for name, text := range files {
		os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644)
	}
	if err := project.Init(context.Background(), env, quietUI(), project.InitOptions{Dir: dir}); err != nil {
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

// open returns the lifecycle over the Guix driver and its one machine's files.
func open(t testing.TB, vf *vmfile.Vmfile, env *hostenv.Env) (*machine.Manager, *state.VM) {
	t.Helper()
	mg, err := backends.ForVmfile(vf, env, quietUI())
	if err != nil {
		t.Fatal(err)
	}
	return mg, state.New(vf.Dir, vf.Name, env.Dirs())
}

func TestBuildCache(t *testing.T) {
	env, log := testEnv(t)
	dir := newCheckout(t, env, nil)
	vf, err := vmfile.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	g, m := open(t, vf, env)
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
	var rec machine.Build
	readJSON(t, m.BuildRecord(), &rec)
	os.Remove(rec.Root)
	build(backend.BuildOptions{})
	if n := guixRuns(log); n != 4 {
		t.Errorf("missing GC root: %d runs, want 4", n)
	}
	readJSON(t, m.BuildRecord(), &rec)
	if target, err := os.Readlink(rec.Root); err != nil || target != rec.Artifact {
		t.Errorf("GC root %s -> %s (%v), want %s", rec.Root, target, err, rec.Artifact)
	}
}

func TestBuildRefusesUnpinnedChannels(t *testing.T) {
	env, log := testEnv(t)
	dir := newCheckout(t, env, nil)
	os.WriteFile(filepath.Join(dir, "channels.scm"), []byte(`(list (channel (name 'guix) (url "https://git.guix.gnu.org/guix.git") (branch "master")))`), 0o644)
	vf, _ := vmfile.Load(dir)
	g, _ := open(t, vf, env)
	err := g.Build(context.Background(), backend.BuildOptions{})
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
	g, _ := open(t, vf, env)
	err := g.Build(context.Background(), backend.BuildOptions{})
	if err == nil || !strings.Contains(err.Error(), "guix.config") || !strings.Contains(err.Error(), "devvm init") {
		t.Fatalf("missing config: %v", err)
	}
}

// BenchmarkBuildCached measures an unchanged `devvm build`: it must not run
// guix and should cost devvm well under 50 ms (real `guix system vm` spends
// ~13 s just evaluating a dev config).
func BenchmarkBuildCached(b *testing.B) {
	env, log := testEnv(b)
	dir := newCheckout(b, env, nil)
	vf, _ := vmfile.Load(dir)
	g, _ := open(b, vf, env)
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
	g, _ := open(b, vf, env)
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
	g, m := open(t, vf, env)
	ctx := context.Background()
	if err := g.Build(ctx, backend.BuildOptions{}); err != nil {
		t.Fatal(err)
	}
	var old machine.Build
	readJSON(t, m.BuildRecord(), &old)
	cfg := filepath.Join(dir, "dev-vm.scm")
	text, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(text), `(timezone "Etc/UTC")`, `(timezone "Europe/Paris")`, 1)), 0o644)
	if err := g.Build(ctx, backend.BuildOptions{}); err != nil {
		t.Fatal(err)
	}
	var cur machine.Build
	readJSON(t, m.BuildRecord(), &cur)

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
	// A dead item of another project: devvm's gc leaves it, `--store` takes it.
	other := filepath.Join(filepath.Dir(old.Artifact), "0000000000000000000000000000000a-other-project")
	os.WriteFile(other, []byte("not devvm's"), 0o644)
	rep, err = g.GC(ctx, backend.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("devvm gc collected another project's dead item: %v", err)
	}
	if !rep.StoreGC || rep.FreedBytes < 0 {
		t.Errorf("store GC: %+v", rep)
	}
	if _, err := os.Lstat(old.Root); !os.IsNotExist(err) {
		t.Error("the old build's root survived gc")
	}
	if _, err := os.Stat(old.Artifact); !os.IsNotExist(err) {
		t.Error("the old build's script survived the store GC")
	}
	if _, err := os.Stat(cur.Artifact); err != nil {
		t.Errorf("gc collected the current build: %v", err)
	}
	if _, err := g.GC(ctx, backend.GCOptions{Store: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Errorf("gc --store left a dead item: %v", err)
	}
	if _, err := os.Stat(cur.Artifact); err != nil {
		t.Errorf("gc --store collected the current build: %v", err)
	}
}

// TestForgedBuildRecordNotBooted: a build record naming anything but the
// store item behind devvm's GC root is not used: guix builds again and the
// record names the store's run-vm.sh.
func TestForgedBuildRecordNotBooted(t *testing.T) {
	env, log := testEnv(t)
	dir := newCheckout(t, env, nil)
	vf, _ := vmfile.Load(dir)
	g, m := open(t, vf, env)
	ctx := context.Background()
	if err := g.Build(ctx, backend.BuildOptions{}); err != nil {
		t.Fatal(err)
	}
	var rec machine.Build
	readJSON(t, m.BuildRecord(), &rec)
	for _, forged := range []string{"/bin/sh", filepath.Join(dir, "run-vm.sh")} {
		bad := rec
		bad.Artifact = forged
		state.WriteJSON(m.BuildRecord(), bad)
		runs := guixRuns(log)
		if err := g.Build(ctx, backend.BuildOptions{}); err != nil {
			t.Fatal(err)
		}
		var now machine.Build
		readJSON(t, m.BuildRecord(), &now)
		if now.Artifact == forged || guixRuns(log) != runs+1 {
			t.Errorf("a record naming %s: artifact %s, %d guix runs", forged, now.Artifact, guixRuns(log)-runs)
		}
	}
}
