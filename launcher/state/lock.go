package state

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Lock is the per-VM command lock: one devvm command at a time per VM.
type Lock struct{ f *os.File }

// ErrBusy is returned (wrapped) when another command holds the lock.
var ErrBusy = errors.New("busy")

// Lock takes the VM's lock without waiting. what names the command for the
// message another command will see (e.g. "devvm up").
func (v *VM) Lock(what string) (*Lock, error) {
	if err := v.Ensure(); err != nil {
		return nil, err
	}
	path := v.Path("lock")
	f, err := OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := ReadFile(path, 4096)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			h := strings.TrimSpace(string(holder))
			if h == "" {
				h = "another devvm command"
			}
			return nil, fmt.Errorf("%w: VM %q is in use by %s; wait for it to finish (lock: %s)", ErrBusy, v.Name, h, path)
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	f.Truncate(0)
	fmt.Fprintf(f, "`%s` (pid %d)\n", what, os.Getpid())
	return &Lock{f: f}, nil
}

// Unlock releases the lock.
func (l *Lock) Unlock() {
	if l == nil || l.f == nil {
		return
	}
	l.f.Truncate(0)
	unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	l.f.Close()
	l.f = nil
}
