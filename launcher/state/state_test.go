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

func TestLayout(t *testing.T) {
	v := New("/home/me/qbuf", "qbuf", "/run/user/1000/devvm")
	if v.Dir() != "/home/me/qbuf/.devvm/qbuf" || !strings.HasPrefix(v.QMPSocket(), "/run/user/1000/devvm/") {
		t.Errorf("layout: %s %s", v.Dir(), v.QMPSocket())
	}
	if len(v.ID()) != 12 || v.ID() == New("/home/me/other", "qbuf", "").ID() || v.ID() == New("/home/me/qbuf", "x", "").ID() {
		t.Errorf("ID must be short and differ per checkout and name: %s", v.ID())
	}
	if v.Marker() != "devvm-"+v.ID() || v.GCRoot(strings.Repeat("a", 64)) != "/home/me/qbuf/.devvm/qbuf/gcroots/run-vm-aaaaaaaaaaaaaaaa" {
		t.Errorf("marker %s root %s", v.Marker(), v.GCRoot(strings.Repeat("a", 64)))
	}
}

func TestLockIsExclusive(t *testing.T) {
	v := New(t.TempDir(), "vm", t.TempDir())
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

func TestEnsureIgnoresStateDir(t *testing.T) {
	co := t.TempDir()
	v := New(co, "vm", filepath.Join(t.TempDir(), "rt"))
	if err := v.Ensure(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(co, ".devvm", ".gitignore"))
	if !strings.Contains(string(b), "*") {
		t.Errorf(".devvm/.gitignore: %q", b)
	}
	if st, err := os.Stat(v.RuntimeDir()); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("runtime dir: %v %v", st, err)
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
