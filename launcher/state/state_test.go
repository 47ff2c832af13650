package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func testDirs(t *testing.T) Dirs {
	base := t.TempDir()
	return Dirs{State: filepath.Join(base, "state", "devvm"), Runtime: filepath.Join(base, "rt", "devvm")}
}

func TestLayout(t *testing.T) {
	d := Dirs{State: "/home/me/.local/state/devvm", Runtime: "/run/user/1000/devvm"}
	v := New("/home/me/qbuf", "qbuf", d)
	if !strings.HasPrefix(v.Dir(), "/home/me/.local/state/devvm/checkouts/qbuf-") || !strings.HasSuffix(v.Dir(), "/qbuf") ||
		strings.HasPrefix(v.Dir(), "/home/me/qbuf") || !strings.HasPrefix(v.QMPSocket(), "/run/user/1000/devvm/") {
		t.Errorf("layout: %s %s", v.Dir(), v.QMPSocket())
	}
	if len(v.ID()) != 12 || v.ID() == New("/home/me/other", "qbuf", d).ID() || v.ID() == New("/home/me/qbuf", "x", d).ID() {
		t.Errorf("ID must be short and differ per checkout and name: %s", v.ID())
	}
	if New("/a/qbuf", "qbuf", d).Root() == New("/b/qbuf", "qbuf", d).Root() {
		t.Errorf("two clones with the same base name share a state directory")
	}
	if v.Marker() != "devvm-"+v.ID() || v.GCRoot(strings.Repeat("a", 64)) != v.Dir()+"/gcroots/run-vm-aaaaaaaaaaaaaaaa" {
		t.Errorf("marker %s root %s", v.Marker(), v.GCRoot(strings.Repeat("a", 64)))
	}
	d.GCRoots = "/var/guix/profiles/per-user/me/devvm"
	if r := New("/home/me/qbuf", "qbuf", d).GCRootDir(); !strings.HasPrefix(r, d.GCRoots+"/qbuf-") || !strings.HasSuffix(r, "-qbuf") {
		t.Errorf("GC root dir with a daemon-readable root: %s", r)
	}
}

func TestLockIsExclusive(t *testing.T) {
	v := New(t.TempDir(), "vm", testDirs(t))
	l, err := v.Lock("devvm up")
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Lock("devvm halt")
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "`devvm up`") || !strings.Contains(err.Error(), fmt.Sprint(os.Getpid())) {
		t.Errorf("second lock: %v", err)
	}
	l.Unlock()
	l2, err := v.Lock("devvm halt")
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	l2.Unlock()
}

// TestEnsureMakesPrivateDirs: every directory devvm keeps state in is 0700
// and the checkout gets nothing.
func TestEnsureMakesPrivateDirs(t *testing.T) {
	co := t.TempDir()
	d := testDirs(t)
	v := New(co, "vm", d)
	if err := v.Ensure(); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{d.State, v.Root(), v.Dir(), d.Runtime, v.RuntimeDir()} {
		if st, err := os.Lstat(dir); err != nil || st.Mode().Perm() != 0o700 || !st.IsDir() {
			t.Errorf("%s: %v %v", dir, st, err)
		}
	}
	if ents, _ := os.ReadDir(co); len(ents) != 0 {
		t.Errorf("devvm wrote into the checkout: %v", ents)
	}
	os.Chmod(v.Dir(), 0o755)
	if err := v.Ensure(); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(v.Dir()); st.Mode().Perm() != 0o700 {
		t.Errorf("a widened state dir is not narrowed back: %v", st.Mode())
	}
}

// TestPlantedLinksRefused: a link where devvm writes, locks or keeps a
// directory is an error that names it; its target is never written.
func TestPlantedLinksRefused(t *testing.T) {
	d := testDirs(t)
	v := New(t.TempDir(), "vm", d)
	if err := v.Ensure(); err != nil {
		t.Fatal(err)
	}
	sentinel := filepath.Join(t.TempDir(), "sentinel")
	os.WriteFile(sentinel, []byte("keep"), 0o600)
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrLink) {
			t.Errorf("%s through a planted link: %v", what, err)
		}
		if b, _ := os.ReadFile(sentinel); string(b) != "keep" {
			t.Fatalf("%s wrote through a link: the target now holds %q", what, b)
		}
	}
	os.Symlink(sentinel, v.Path("lock"))
	_, err := v.Lock("devvm up")
	check("lock", err)
	os.Symlink(sentinel, v.ConsoleLog())
	_, err = CreateFile(v.ConsoleLog(), 0o600)
	check("create", err)
	_, err = ReadFile(v.ConsoleLog(), 100)
	check("read", err)
	// Atomic writes replace the link itself.
	if err := WriteJSON(v.Path("lock"), 1); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(sentinel); string(b) != "keep" {
		t.Fatalf("WriteJSON followed a link")
	}
	// A linked state or runtime directory is refused.
	other := t.TempDir()
	d2 := testDirs(t)
	os.MkdirAll(filepath.Dir(d2.Runtime), 0o700)
	os.Symlink(other, d2.Runtime)
	err = New(t.TempDir(), "vm", d2).Ensure()
	if !errors.Is(err, ErrLink) || !strings.Contains(err.Error(), d2.Runtime) {
		t.Errorf("runtime dir behind a link: %v", err)
	}
}

// TestRuntimeDirOfAnotherUser: a socket directory someone else made first
// (in a shared /tmp) is refused.
func TestRuntimeDirOfAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a directory owned by another user")
	}
	dir := filepath.Join(t.TempDir(), "devvm-1000")
	os.Mkdir(dir, 0o777)
	os.Chown(dir, 65534, 65534)
	if err := EnsureRuntimeDir(dir); err == nil || !strings.Contains(err.Error(), "uid 65534") {
		t.Errorf("another user's runtime dir: %v", err)
	}
}

func TestJSONRecords(t *testing.T) {
	p := filepath.Join(t.TempDir(), "r.json")
	var v map[string]int
	if ok, err := ReadJSON(p, &v); ok || err != nil {
		t.Errorf("missing record: %v %v", ok, err)
	}
	if err := WriteJSON(p, map[string]int{"a": 1}); err != nil {
		t.Fatal(err)
	}
	if ok, err := ReadJSON(p, &v); !ok || err != nil || v["a"] != 1 {
		t.Errorf("round trip: %v %v %v", ok, err, v)
	}
	os.WriteFile(p, []byte("{broken"), 0o644)
	if _, err := ReadJSON(p, &v); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("damaged record: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(p)); len(ents) != 1 {
		t.Errorf("temp files left behind: %v", ents)
	}
}

func TestRegistryConcurrent(t *testing.T) {
	r := OpenRegistry(t.TempDir())
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := r.Add(Entry{ID: fmt.Sprint(i), Name: fmt.Sprintf("vm%02d", i), Checkout: "/c", Added: time.Now()}); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	es, err := r.List()
	if err != nil || len(es) != 20 || es[0].Name != "vm00" {
		t.Fatalf("after 20 concurrent adds: %d entries, %v", len(es), err)
	}
	added := es[0].Added
	r.Add(Entry{ID: "0", Name: "vm00", Checkout: "/c", Added: added.Add(time.Hour)})
	r.Remove("1")
	es, _ = r.List()
	if len(es) != 19 || !es[0].Added.Equal(added) {
		t.Errorf("re-adding must keep the first time; remove must drop: %v", es)
	}
}
