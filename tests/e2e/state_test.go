//go:build e2e

package e2e

import (
	"path/filepath"

	"github.com/devvm/devvm/launcher/state"
)

// vmState is the VM's state directory as devvm lays it out for this world
// (under XDG_STATE_HOME, never in the checkout).
func (w *world) vmState(name string) *state.VM {
	return state.New(w.checkout, name, state.Dirs{State: filepath.Join(w.home, ".local/state", "devvm")})
}

// vmDir is the VM's state directory.
func (w *world) vmDir(name string) string { return w.vmState(name).Dir() }
