package engine

import (
	"fmt"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/microvm"
	"github.com/devvm/devvm/launcher/vmfile"
)

// Open loads the Vmfile of the checkout at dir and returns its backend.
func Open(dir string, env *hostenv.Env, ui *UI) (backend.Backend, *vmfile.Vmfile, error) {
	vf, err := vmfile.Load(dir)
	if err != nil {
		return nil, nil, err
	}
	switch vf.Backend {
	case vmfile.BackendGuix:
		return NewGuix(vf, env, ui), vf, nil
	case vmfile.BackendMicroVM:
		b, err := microvm.New(vf, env, ui)
		if err != nil {
			return nil, nil, err
		}
		return b, vf, nil
	}
	return nil, nil, fmt.Errorf("%s: backend %q is not available in this build of devvm", vf.Path, vf.Backend)
}
