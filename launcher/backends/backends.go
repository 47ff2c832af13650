// Package backends opens the backend a Vmfile asks for: the lifecycle of
// launcher/machine over the backend's driver.
package backends

import (
	"fmt"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/guixvm"
	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/machine"
	"github.com/devvm/devvm/launcher/microvm"
	"github.com/devvm/devvm/launcher/vmfile"
)

// Open loads the Vmfile of the checkout at dir and returns its backend.
func Open(dir string, env *hostenv.Env, ui *backend.UI) (*machine.Manager, *vmfile.Vmfile, error) {
	vf, err := vmfile.Load(dir)
	if err != nil {
		return nil, nil, err
	}
	m, err := ForVmfile(vf, env, ui)
	return m, vf, err
}

// ForVmfile returns the backend of a loaded Vmfile.
func ForVmfile(vf *vmfile.Vmfile, env *hostenv.Env, ui *backend.UI) (*machine.Manager, error) {
	var d machine.Driver
	switch vf.Backend {
	case vmfile.BackendGuix:
		d = guixvm.New(vf, env, ui)
	case vmfile.BackendMicroVM:
		var err error
		if d, err = microvm.New(vf, env, ui); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%s: backend %q is not available in this build of devvm", vf.Path, vf.Backend)
	}
	return machine.New(d, vf, env, ui), nil
}
