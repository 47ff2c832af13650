package guixvm

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/machine"
	"github.com/devvm/devvm/launcher/qemu"
)

// GC implements machine.Driver: it removes the GC roots and persistent
// disks of builds no target keeps, then collects only what those builds
// alone held: their store closure minus what is still alive (`guix gc -R`
// of the dropped items, intersected with `guix gc --list-dead`, deleted with
// `guix gc -D`), so other projects' items and this VM's build-time inputs
// stay. opts.Store runs a store-wide `guix gc` instead.
func (d *Driver) GC(ctx context.Context, ts []machine.GCTarget, opts backend.GCOptions) (*backend.GCReport, error) {
	rep := &backend.GCReport{FreedBytes: -1}
	var items []string
	for _, t := range ts {
		kept := map[string]bool{}
		for key := range t.Keep {
			kept[filepath.Base(t.M.VM.GCRoot(key))] = true
			kept[filepath.Base(t.M.VM.Disk(key))] = true
		}
		roots, _ := filepath.Glob(filepath.Join(t.M.VM.GCRootDir(), "run-vm-*"))
		disks, _ := filepath.Glob(t.M.VM.Path("disk-*.qcow2"))
		for _, p := range roots {
			if kept[filepath.Base(p)] {
				continue
			}
			if target, err := os.Readlink(p); err == nil && qemu.IsStoreItem(target, "-run-vm.sh") {
				items = append(items, target)
			}
			rep.Roots = append(rep.Roots, p)
		}
		for _, p := range disks {
			if !kept[filepath.Base(p)] {
				rep.Files = append(rep.Files, p)
			}
		}
	}
	if opts.DryRun {
		return rep, nil
	}
	var requisites []string
	if !opts.Store && len(items) > 0 {
		out, err := d.guixGC(ctx, append([]string{"-R"}, items...)...)
		if err != nil {
			return rep, err
		}
		requisites = strings.Fields(out)
	}
	for _, p := range append(append([]string{}, rep.Roots...), rep.Files...) {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return rep, err
		}
	}
	switch {
	case opts.Store:
		out, err := d.guixGC(ctx)
		if err != nil {
			return rep, err
		}
		rep.StoreGC, rep.FreedBytes = true, parseFreed(out)
	case len(requisites) > 0:
		out, err := d.guixGC(ctx, "--list-dead")
		if err != nil {
			return rep, err
		}
		dead := map[string]bool{}
		for _, p := range strings.Fields(out) {
			dead[p] = true
		}
		var del []string
		for _, p := range requisites {
			if dead[p] {
				del = append(del, p)
			}
		}
		rep.StoreGC, rep.FreedBytes = true, 0
		if len(del) > 0 {
			// `guix gc -D` reports no total (guix:guix/scripts/gc.scm:344-346):
			// measure what goes before it goes.
			size := diskUsage(del)
			if _, err := d.guixGC(ctx, append([]string{"-D"}, del...)...); err != nil {
				return rep, err
			}
			rep.FreedBytes = size
		}
	}
	return rep, nil
}

// guixGC runs `guix gc ARGS…` and returns its stdout and stderr.
func (d *Driver) guixGC(ctx context.Context, args ...string) (string, error) {
	argv := append([]string{"gc"}, args...)
	d.ui.Printf("$ %s %s", d.guixCommand(), shortArgs(argv))
	out, err := d.env.Command(ctx, d.guixCommand(), argv...).CombinedOutput()
	if err != nil {
		tail := strings.TrimSpace(string(out))
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return "", fmt.Errorf("`guix %s` failed: %v\n%s\nhint: is the guix daemon running? (`devvm doctor`)", shortArgs(argv), err, tail)
	}
	return string(out), nil
}

func shortArgs(argv []string) string {
	if len(argv) > 4 {
		return strings.Join(argv[:3], " ") + fmt.Sprintf(" … (%d store items)", len(argv)-2)
	}
	return strings.Join(argv, " ")
}

// freedRe matches what guix gc says it freed: "guix gc: freed 12 MiB"
// (guix:guix/scripts/gc.scm:330-335, sizes by guix/ui.scm:700-726).
var freedRe = regexp.MustCompile(`freed ([0-9][0-9,]*(?:\.[0-9]+)?) ?([KMGT]?i?B|bytes?)\b`)

// parseFreed returns the bytes guix gc said it freed (-1 when it does not say).
func parseFreed(out string) int64 {
	m := freedRe.FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		return -1
	}
	last := m[len(m)-1]
	f, _ := strconv.ParseFloat(strings.ReplaceAll(last[1], ",", ""), 64)
	mult := map[string]float64{"B": 1, "byte": 1, "bytes": 1, "KB": 1e3, "KiB": 1 << 10, "MB": 1e6, "MiB": 1 << 20, "GB": 1e9, "GiB": 1 << 30, "TB": 1e12, "TiB": 1 << 40}[last[2]]
	return int64(f * mult)
}

// diskUsage is the space the files under paths take (blocks, as du counts).
func diskUsage(paths []string) int64 {
	var n int64
	for _, p := range paths {
		filepath.WalkDir(p, func(_ string, e fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if info, err := e.Info(); err == nil {
				if st, ok := info.Sys().(*syscall.Stat_t); ok {
					n += st.Blocks * 512
				}
			}
			return nil
		})
	}
	return n
}
