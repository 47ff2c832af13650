package machine

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/proc"
	"github.com/devvm/devvm/launcher/state"
	"github.com/devvm/devvm/launcher/vmfile"
)

// StopOrphans stops the running machines devvm recorded for a checkout
// whose Vmfile does not load (a typo must not keep a VM from being halted
// or destroyed): each recorded local process that is still the one devvm
// started gets SIGTERM (QEMU flushes its disks and exits; the guest gets no
// clean shutdown, which needs the Vmfile's SSH user), then SIGKILL within
// timeout. With remove, their state goes too. It returns how many it found.
func StopOrphans(ctx context.Context, env *hostenv.Env, ui *backend.UI, checkout string, timeout time.Duration, remove bool) (int, error) {
	entries, err := state.OpenRegistry(env.StateDir).List()
	if err != nil {
		return 0, err
	}
	if timeout <= 0 {
		timeout = backend.DefaultHaltTimeout
	}
	n := 0
	for _, e := range entries {
		if e.Checkout != checkout {
			continue
		}
		vm := state.New(checkout, e.Name, env.Dirs())
		lk, err := vm.Lock("devvm halt")
		if err != nil {
			return n, err
		}
		err = stopOrphan(ctx, ui, vm, e.Backend, timeout)
		if err == nil && remove {
			err = vm.Remove()
			if err == nil {
				err = state.OpenRegistry(env.StateDir).Remove(vm.ID())
			}
			ui.Printf("VM %q destroyed: its state, disks, keys, logs and GC roots are gone", e.Name)
		}
		lk.Unlock()
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func stopOrphan(ctx context.Context, ui *backend.UI, vm *state.VM, kind string, timeout time.Duration) error {
	var rec Record
	if ok, err := state.ReadJSON(vm.Record(), &rec); err != nil || !ok || rec.Process == nil {
		return err
	}
	id := *rec.Process
	if kind == vmfile.BackendGuix {
		id.Marker, id.Pidfile = vm.Marker(), vm.Pidfile()
		if rec.Adopted {
			id.Pidfile = ""
		}
	}
	if !proc.Ours(id) {
		return nil
	}
	ui.Printf("stopping VM %q (pid %d) by its record: SIGTERM, as its Vmfile cannot say how to power the guest off", vm.Name, id.PID)
	stopped := func(d time.Duration) bool {
		wctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		return proc.WaitGone(wctx, id, gonePoll) == nil
	}
	if err := proc.Signal(id, syscall.SIGTERM); err == nil && stopped(timeout) {
		ui.Printf("VM %q stopped", vm.Name)
		return nil
	}
	if err := proc.Signal(id, syscall.SIGKILL); err != nil && proc.Ours(id) {
		return err
	}
	if !stopped(2 * time.Second) {
		return fmt.Errorf("the process of VM %q (pid %d) survived SIGKILL", vm.Name, id.PID)
	}
	ui.Printf("VM %q killed", vm.Name)
	return nil
}
