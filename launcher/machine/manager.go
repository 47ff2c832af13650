package machine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/proc"
	"github.com/devvm/devvm/launcher/state"
	"github.com/devvm/devvm/launcher/vmfile"
)

// ReadyPoll is how often `up` tries SSH while a guest boots.
const ReadyPoll = 200 * time.Millisecond

// gonePoll is how often a halt checks whether a local process has exited;
// remotePoll how often it asks a remote unit.
const (
	gonePoll   = 50 * time.Millisecond
	remotePoll = 500 * time.Millisecond
)

// Manager runs the lifecycle of a Vmfile's machines over a Driver; it
// implements backend.Backend.
type Manager struct {
	d   Driver
	vf  *vmfile.Vmfile
	env *hostenv.Env
	ui  *backend.UI
	ms  map[string]*Machine
}

var _ backend.Backend = (*Manager)(nil)

// New returns the manager of vf's machines driven by d.
func New(d Driver, vf *vmfile.Vmfile, env *hostenv.Env, ui *backend.UI) *Manager {
	mg := &Manager{d: d, vf: vf, env: env, ui: ui, ms: map[string]*Machine{}}
	for _, n := range d.Machines() {
		mg.ms[n] = &Machine{Name: n, VM: state.New(vf.Dir, n, env.Dirs())}
	}
	return mg
}

// Kind implements backend.Backend.
func (mg *Manager) Kind() string { return mg.d.Kind() }

// Machines implements backend.Backend.
func (mg *Manager) Machines() []string { return mg.d.Machines() }

// Driver returns the manager's driver.
func (mg *Manager) Driver() Driver { return mg.d }

// Close ends the driver's connections.
func (mg *Manager) Close() error {
	if c, ok := mg.d.(Closer); ok {
		return c.Close()
	}
	return nil
}

// Capabilities implements backend.Backend.
func (mg *Manager) Capabilities() backend.Capabilities {
	_, console := mg.d.(Consoler)
	_, rollback := mg.d.(Rollbacker)
	return backend.Capabilities{Console: console, Rollback: rollback}
}

// pick returns the machines to act on (all when names is empty); unknown
// names are refused before anything runs.
func (mg *Manager) pick(names []string) ([]*Machine, error) {
	all := mg.d.Machines()
	if len(names) == 0 {
		names = all
	}
	var out []*Machine
	for _, n := range names {
		m, ok := mg.ms[n]
		if !ok {
			return nil, fmt.Errorf("no machine %q in %s: this Vmfile defines %s", n, mg.vf.Path, strings.Join(all, ", "))
		}
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out, nil
}

func (mg *Manager) one(name string) (*Machine, error) {
	ms, err := mg.pick([]string{name})
	if err != nil {
		return nil, err
	}
	return ms[0], nil
}

// lock takes the command lock of every machine, or of none.
func (mg *Manager) lock(ms []*Machine, what string) (func(), error) {
	var held []*state.Lock
	unlock := func() {
		for _, l := range held {
			l.Unlock()
		}
	}
	for _, m := range ms {
		if err := mg.migrate(m); err != nil {
			unlock()
			return nil, err
		}
		l, err := m.VM.Lock(what)
		if err != nil {
			unlock()
			return nil, err
		}
		held = append(held, l)
	}
	return unlock, nil
}

// pickLocked picks the machines of names and takes all their locks.
func (mg *Manager) pickLocked(names []string, what string) ([]*Machine, func(), error) {
	ms, err := mg.pick(names)
	if err != nil {
		return nil, nil, err
	}
	unlock, err := mg.lock(ms, what)
	if err != nil {
		return nil, nil, err
	}
	return ms, unlock, nil
}

// locked runs fn for each machine under the lock of all of them.
func (mg *Manager) locked(names []string, what string, fn func(*Machine) error) error {
	ms, unlock, err := mg.pickLocked(names, what)
	if err != nil {
		return err
	}
	defer unlock()
	for _, m := range ms {
		if err := fn(m); err != nil {
			return err
		}
	}
	return nil
}

// observed is a machine's record checked against reality.
type observed struct {
	rec    *Record // nil when there is no record and nothing runs
	state  string  // backend.Running / Starting / Stopped / Broken
	reason string
	stale  bool // a record exists but what it names is gone
}

// identity is the recorded process with the marker and pidfile derived
// from the machine, never read back from the record.
func (mg *Manager) identity(m *Machine, rec *Record) proc.Identity {
	id := *rec.Process
	id.Marker, id.Pidfile = mg.d.Identity(m)
	if rec.Adopted {
		id.Pidfile = ""
	}
	return id
}

// observe reads the machine's record and checks it: its process must be
// proven the machine's (proc.Check against the derived identity), then the
// driver probes what the process check cannot see.
func (mg *Manager) observe(ctx context.Context, m *Machine) (observed, error) {
	var rec Record
	ok, err := state.ReadJSON(m.VM.Record(), &rec)
	if err != nil {
		return observed{}, err
	}
	marker, _ := mg.d.Identity(m)
	if !ok {
		if marker != "" {
			return observed{state: backend.Stopped}, nil
		}
		// A remote machine runs whether or not this host recorded it.
		v := mg.d.Probe(ctx, m, nil)
		if v.Err != nil {
			return observed{}, v.Err
		}
		if v.State != backend.Stopped {
			return observed{rec: &Record{Backend: mg.d.Kind()}, state: v.State, reason: v.Reason}, nil
		}
		return observed{state: backend.Stopped, reason: v.Reason}, nil
	}
	if rec.Process != nil {
		if marker == "" {
			return observed{rec: &rec, state: backend.Broken, reason: "the record names a local process, which this backend never starts"}, nil
		}
		id := mg.identity(m, &rec)
		v := proc.Check(id)
		switch {
		case v.State == proc.Gone:
			return observed{rec: &rec, state: backend.Stopped, reason: v.Reason, stale: true}, nil
		case v.State == proc.Foreign && !proc.Ours(id):
			return observed{rec: &rec, state: backend.Stopped, reason: v.Reason, stale: true}, nil
		case v.State == proc.Foreign:
			return observed{rec: &rec, state: backend.Broken, reason: fmt.Sprintf("pid %d is still the process devvm started but %s (it is shutting down, or its pidfile was removed)", id.PID, v.Reason)}, nil
		case v.State == proc.Unknown:
			return observed{rec: &rec, state: backend.Broken, reason: "devvm cannot tell whether the VM's process runs: " + v.Reason}, nil
		}
	}
	v := mg.d.Probe(ctx, m, &rec)
	if v.Err != nil {
		return observed{}, v.Err
	}
	switch {
	case v.State == backend.Stopped:
		return observed{rec: &rec, state: backend.Stopped, reason: v.Reason, stale: true}, nil
	case v.State == backend.Broken, v.State == backend.Failed:
		return observed{rec: &rec, state: v.State, reason: v.Reason}, nil
	case rec.LoginRefused != "":
		return observed{rec: &rec, state: backend.Broken, reason: "it runs, but its sshd refuses devvm's login: " + rec.LoginRefused}, nil
	case !rec.Ready:
		return observed{rec: &rec, state: backend.Starting, reason: "booting: SSH has not answered yet"}, nil
	}
	return observed{rec: &rec, state: backend.Running, reason: v.Reason}, nil
}

// forget removes the runtime files of a machine whose process is gone. It
// never touches a process.
func (mg *Manager) forget(m *Machine) {
	for _, f := range []string{m.VM.Record(), m.VM.Pidfile()} {
		os.Remove(f)
	}
	os.RemoveAll(m.VM.RuntimeDir())
}

// cleanStale drops a stale record (under the machine's lock) and says why.
func (mg *Manager) cleanStale(ctx context.Context, m *Machine, o observed) {
	if !o.stale {
		return
	}
	mg.stopShares(ctx, o.rec)
	mg.ui.Printf("cleaned a stale record of VM %q: %s", m.Name, o.reason)
	mg.forget(m)
}

// readRecord reads a machine's record without checking it.
func readRecord(m *Machine) (*Record, error) {
	var rec Record
	ok, err := state.ReadJSON(m.VM.Record(), &rec)
	if err != nil || !ok {
		return nil, err
	}
	return &rec, nil
}

// save writes a machine's record.
func (mg *Manager) save(m *Machine, rec *Record) error {
	rec.Schema, rec.Backend = RecordSchema, mg.d.Kind()
	return state.WriteJSON(m.VM.Record(), rec)
}

// register records a machine in the user-wide registry (devvm list).
func (mg *Manager) register(m *Machine) {
	if err := state.OpenRegistry(mg.env.StateDir).Add(state.Entry{ID: m.VM.ID(), Name: m.Name, Backend: mg.d.Kind(),
		Checkout: mg.vf.Dir, Added: mg.env.Now()}); err != nil {
		mg.ui.Printf("warning: could not update the VM registry: %v", err)
	}
}

// errNotRunning says a machine is not running, with the next step.
func (mg *Manager) errNotRunning(m *Machine, o observed) error {
	switch o.state {
	case backend.Broken:
		return fmt.Errorf("VM %q is broken: %s\nhint: `devvm halt %s` stops it (escalating as needed), then `devvm up %s`", m.Name, o.reason, m.Name, m.Name)
	case backend.Starting:
		return fmt.Errorf("VM %q is still booting (SSH has not answered yet): wait for `devvm up` to finish", m.Name)
	}
	return fmt.Errorf("VM %q is not running: start it with `devvm up %s`", m.Name, m.Name)
}

var errBootTimeout = errors.New("boot timeout")

// RecordedAlive tells whether a machine's record names a local process that
// still runs (whatever its Vmfile says now): `list --prune` never forgets it.
func RecordedAlive(vm *state.VM) bool {
	var rec Record
	if ok, err := state.ReadJSON(vm.Record(), &rec); !ok || err != nil || rec.Process == nil {
		return false
	}
	return !proc.Exited(*rec.Process)
}
