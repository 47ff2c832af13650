package state

import (
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/sys/unix"
)

// Entry is one VM in the user-wide registry.
type Entry struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Backend  string    `json:"backend"`
	Checkout string    `json:"checkout"`
	Added    time.Time `json:"added"`
}

// Registry is the user-wide list of VMs devvm started, across checkouts
// (registry.json in the XDG state dir), guarded by a flock.
type Registry struct{ dir string }

// OpenRegistry returns the registry kept in dir.
func OpenRegistry(dir string) *Registry { return &Registry{dir: dir} }

func (r *Registry) path() string { return filepath.Join(r.dir, "registry.json") }

// update runs fn on the entries under the registry lock and saves them.
func (r *Registry) update(fn func(map[string]Entry)) error {
	if err := MkdirPrivate(r.dir); err != nil {
		return err
	}
	lf, err := OpenFile(filepath.Join(r.dir, "registry.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer lf.Close()
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
		return err
	}
	defer unix.Flock(int(lf.Fd()), unix.LOCK_UN)
	m := map[string]Entry{}
	if _, err := ReadJSON(r.path(), &m); err != nil {
		return err
	}
	fn(m)
	return WriteJSON(r.path(), m)
}

// Add records e (replacing an entry with the same ID).
func (r *Registry) Add(e Entry) error {
	return r.update(func(m map[string]Entry) {
		if old, ok := m[e.ID]; ok {
			e.Added = old.Added
		}
		m[e.ID] = e
	})
}

// Remove drops the entry with id.
func (r *Registry) Remove(id string) error {
	return r.update(func(m map[string]Entry) { delete(m, id) })
}

// List returns the entries sorted by checkout and name.
func (r *Registry) List() ([]Entry, error) {
	m := map[string]Entry{}
	if _, err := ReadJSON(r.path(), &m); err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Checkout != out[j].Checkout {
			return out[i].Checkout < out[j].Checkout
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}
