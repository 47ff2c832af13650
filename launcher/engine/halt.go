package engine

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/proc"
	"github.com/devvm/devvm/launcher/qmp"
	"github.com/devvm/devvm/launcher/sshx"
	"github.com/devvm/devvm/launcher/state"
)

// DefaultHaltTimeout bounds a halt when no --timeout is given.
const DefaultHaltTimeout = 60 * time.Second

// gonePoll is how often halt checks whether QEMU has exited.
const gonePoll = 50 * time.Millisecond

// Halt implements backend.Backend.
func (g *Guix) Halt(ctx context.Context, names []string, opts backend.HaltOptions) error {
	if err := g.checkNames(names); err != nil {
		return err
	}
	lk, err := g.VM.Lock("devvm halt")
	if err != nil {
		return err
	}
	defer lk.Unlock()
	return g.halt(ctx, opts)
}

func (g *Guix) halt(ctx context.Context, opts backend.HaltOptions) error {
	o, err := g.observe(ctx)
	if err != nil {
		return err
	}
	if o.state == backend.Stopped {
		g.cleanStale(o)
		g.UI.Printf("VM %q is not running", g.VF.Name)
		return nil
	}
	return g.haltRuntime(ctx, o.rt, opts)
}

// haltRuntime stops a VM: `sudo poweroff` over SSH (a guest built on
// %base-services may ignore the ACPI button), then QMP system_powerdown,
// then SIGTERM, then SIGKILL, each with a bounded wait inside the total
// timeout. Force skips the graceful steps. A foreground QEMU is devvm's own
// child: its owner reaps it, and a zombie already counts as gone.
func (g *Guix) haltRuntime(ctx context.Context, rt *Runtime, opts backend.HaltOptions) error {
	total := opts.Timeout
	if total <= 0 {
		total = DefaultHaltTimeout
	}
	start := g.Env.Now()
	deadline := func(frac float64, reserve time.Duration) time.Time {
		d := time.Duration(float64(total)*frac) - reserve
		if d < time.Second {
			d = time.Second
		}
		return start.Add(d)
	}
	id := rt.Identity
	waitUntil := func(t time.Time) bool {
		wctx, cancel := context.WithDeadline(ctx, t)
		defer cancel()
		return proc.WaitGone(wctx, id, gonePoll) == nil
	}
	done := func(how string) error {
		g.forget()
		g.UI.Printf("VM %q halted (%s) in %.1fs", g.VF.Name, how, g.Env.Now().Sub(start).Seconds())
		return nil
	}
	// Share servers unmount in the guest while it still runs.
	g.stopSSHShares(ctx, rt)
	if !opts.Force {
		if rt.Ready {
			if err := g.sshPoweroff(ctx, rt); err != nil {
				g.UI.Printf("graceful halt over SSH failed (%v); trying the ACPI power button", err)
			} else if waitUntil(deadline(0.6, 0)) {
				return done("guest powered off over SSH")
			}
		}
		if err := g.qmpPowerdown(ctx, rt); err != nil {
			g.UI.Printf("ACPI power button via QMP failed (%v)", err)
		} else if waitUntil(deadline(1, 3*time.Second)) {
			return done("guest powered off by the ACPI power button")
		}
		g.UI.Printf("the guest did not power off; stopping QEMU")
	}
	if err := proc.Signal(id, syscall.SIGTERM); err != nil {
		if proc.Check(id).State != proc.Alive {
			return done("QEMU had already exited")
		}
		return err
	}
	if waitUntil(deadline(1, time.Second)) {
		return done("QEMU stopped by SIGTERM")
	}
	if err := proc.Signal(id, syscall.SIGKILL); err != nil && proc.Check(id).State == proc.Alive {
		return err
	}
	if waitUntil(g.Env.Now().Add(2 * time.Second)) {
		return done("QEMU killed")
	}
	return fmt.Errorf("QEMU (pid %d) survived SIGKILL; is it stuck in the kernel (D state)? check `ps -o stat= -p %d`", id.PID, id.PID)
}

// sshPoweroff runs `sudo poweroff` in the guest with a short bound. The
// connection dropping under the command is expected.
func (g *Guix) sshPoweroff(ctx context.Context, rt *Runtime) error {
	t, err := g.target(rt)
	if err != nil {
		return err
	}
	t.HandshakeTimeout = 5 * time.Second
	ctx, cancel := context.WithTimeout(ctx, 8*time.Second)
	defer cancel()
	c, err := sshx.Dial(ctx, *t)
	if err != nil {
		return err
	}
	defer c.Close()
	var out strings.Builder
	code, err := c.Run(ctx, "sudo -n poweroff || sudo -n halt", nil, &out, &out, false)
	if err == nil && code != 0 {
		return fmt.Errorf("`sudo poweroff` exited with %d: %s", code, strings.TrimSpace(out.String()))
	}
	return nil
}

func (g *Guix) qmpPowerdown(ctx context.Context, rt *Runtime) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := qmp.Dial(ctx, rt.QMP)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.SystemPowerdown(ctx)
}

// Destroy implements backend.Backend.
func (g *Guix) Destroy(ctx context.Context, names []string, opts backend.DestroyOptions) error {
	if err := g.checkNames(names); err != nil {
		return err
	}
	lk, err := g.VM.Lock("devvm destroy")
	if err != nil {
		return err
	}
	defer lk.Unlock()
	o, err := g.observe(ctx)
	if err != nil {
		return err
	}
	if o.state != backend.Stopped {
		if !opts.Force && g.UI.In != nil {
			if !confirm(g.UI, fmt.Sprintf("VM %q is running; destroy it and delete its state?", g.VF.Name)) {
				return fmt.Errorf("not destroyed")
			}
		}
		if err := g.haltRuntime(ctx, o.rt, backend.HaltOptions{Force: opts.Force, Timeout: DefaultHaltTimeout}); err != nil {
			return fmt.Errorf("%v\nnothing was deleted", err)
		}
	} else if o.rt != nil {
		g.stopSSHShares(ctx, o.rt)
	}
	g.forget()
	if err := os.RemoveAll(g.VM.Dir()); err != nil {
		return fmt.Errorf("removing %s: %w", g.VM.Dir(), err)
	}
	g.tidyRoot()
	if err := state.OpenRegistry(g.Env.StateDir).Remove(g.VM.ID()); err != nil {
		g.UI.Printf("warning: could not update the VM registry: %v", err)
	}
	g.UI.Printf("VM %q destroyed: its state, disks, keys, logs and GC roots are gone", g.VF.Name)
	if opts.GC {
		freed, err := g.storeGC(ctx)
		if err != nil {
			return err
		}
		g.UI.Printf("guix gc freed %s", backend.HumanBytes(freed))
	}
	return nil
}

// tidyRoot removes .devvm when no VM is left in it.
func (g *Guix) tidyRoot() {
	ents, err := os.ReadDir(g.VM.Root())
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.IsDir() {
			return
		}
	}
	os.RemoveAll(g.VM.Root())
}

func confirm(ui *UI, q string) bool {
	fmt.Fprintf(ui.Err, "%s [y/N] ", q)
	var b [64]byte
	n, _ := ui.In.Read(b[:])
	a := strings.ToLower(strings.TrimSpace(string(b[:n])))
	return a == "y" || a == "yes"
}

var freedRe = regexp.MustCompile(`freed ([0-9][0-9,]*(?:\.[0-9]+)?) ?([KMGT]?i?B)`)

// storeGC runs `guix gc` and returns the bytes it says it freed (-1 when
// it does not say).
func (g *Guix) storeGC(ctx context.Context) (int64, error) {
	g.UI.Printf("running guix gc")
	cmd := g.Env.Command(ctx, g.guixCommand(), "gc")
	out, err := cmd.CombinedOutput()
	if err != nil {
		tail := strings.TrimSpace(string(out))
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return 0, fmt.Errorf("guix gc failed: %v\n%s\nhint: is the guix daemon running? (`devvm doctor`)", err, tail)
	}
	m := freedRe.FindAllStringSubmatch(string(out), -1)
	if len(m) == 0 {
		return -1, nil
	}
	last := m[len(m)-1]
	f, _ := strconv.ParseFloat(strings.ReplaceAll(last[1], ",", ""), 64)
	mult := map[string]float64{"B": 1, "KB": 1e3, "KiB": 1 << 10, "MB": 1e6, "MiB": 1 << 20, "GB": 1e9, "GiB": 1 << 30, "TB": 1e12, "TiB": 1 << 40}[last[2]]
	return int64(f * mult), nil
}

// GC implements backend.Backend: it removes GC roots and persistent disks
// of builds neither the current build record nor the running VM uses,
// then runs `guix gc`.
func (g *Guix) GC(ctx context.Context, opts backend.GCOptions) (*backend.GCReport, error) {
	lk, err := g.VM.Lock("devvm gc")
	if err != nil {
		return nil, err
	}
	defer lk.Unlock()
	keep := map[string]bool{}
	var rec BuildRecord
	if ok, _ := state.ReadJSON(g.VM.BuildRecord(), &rec); ok {
		keep[filepath.Base(g.VM.GCRoot(rec.Key))] = true
		keep[filepath.Base(g.VM.Disk(rec.Key))] = true
	}
	if o, err := g.observe(ctx); err == nil && o.rt != nil && o.state != backend.Stopped {
		keep[filepath.Base(g.VM.GCRoot(o.rt.BuildKey))] = true
		keep[filepath.Base(g.VM.Disk(o.rt.BuildKey))] = true
	}
	rep := &backend.GCReport{FreedBytes: -1}
	roots, _ := filepath.Glob(filepath.Join(g.VM.GCRootDir(), "run-vm-*"))
	disks, _ := filepath.Glob(g.VM.Path("disk-*.qcow2"))
	for _, list := range []struct {
		paths []string
		into  *[]string
	}{{roots, &rep.Roots}, {disks, &rep.Files}} {
		for _, p := range list.paths {
			if keep[filepath.Base(p)] {
				continue
			}
			*list.into = append(*list.into, p)
			if !opts.DryRun {
				if err := os.Remove(p); err != nil {
					return nil, err
				}
			}
		}
	}
	if opts.DryRun {
		return rep, nil
	}
	freed, err := g.storeGC(ctx)
	if err != nil {
		return rep, err
	}
	rep.StoreGC, rep.FreedBytes = true, freed
	return rep, nil
}

// Logs implements backend.Backend: the serial console log.
func (g *Guix) Logs(ctx context.Context, name string, opts backend.LogOptions, w io.Writer) error {
	if err := g.checkNames([]string{name}); err != nil {
		return err
	}
	return followFile(ctx, g.VM.ConsoleLog(), opts, w, func() bool {
		o, err := g.observe(ctx)
		return err == nil && o.state != backend.Stopped
	})
}
