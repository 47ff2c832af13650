package machine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/devvm/devvm/launcher/proc"
	"github.com/devvm/devvm/launcher/state"
)

// Adopter builds the record of a machine's live process found through a
// legacy .devvm record, from what the process itself shows (/proc), never
// from the legacy record.
type Adopter interface {
	Adopt(m *Machine, id proc.Identity, argv []string) (*Record, error)
}

// Migrator takes over what a driver kept in a legacy .devvm directory
// besides records and disks (a microvm runner's out-links), treating it as
// untrusted.
type Migrator interface {
	MigrateLegacy(m *Machine, legacy string) error
}

// migrate takes over a machine's legacy <checkout>/.devvm/<name>/ on the
// machine's first use by this devvm (its state directory does not exist
// yet); later, a .devvm in the checkout is the guest's or someone else's
// doing and is never read. devvm kept its state there, where the guest can
// write, so nothing in it is trusted. A running process is adopted only when /proc proves it is the
// machine's (the marker devvm derives), persistent disks move (their
// backing file is checked at every boot), and everything else (records,
// keys, logs, GC roots) is dropped: the next `up` rebuilds the record from
// a build, which finds its outputs in the store. Then the legacy directory
// goes. A symbolic link at .devvm is removed, never followed.
func (mg *Manager) migrate(m *Machine) error {
	root := filepath.Join(mg.vf.Dir, state.LegacyDirName)
	st, err := os.Lstat(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := os.Lstat(m.VM.Dir()); err == nil {
		return nil
	}
	if st.Mode()&os.ModeSymlink != 0 || !st.IsDir() {
		mg.ui.Printf("removing %s: devvm's state no longer lives in the checkout (and never behind a link)", root)
		return os.Remove(root)
	}
	legacy := m.VM.Legacy()
	if lst, err := os.Lstat(legacy); err == nil {
		if lst.Mode()&os.ModeSymlink != 0 || !lst.IsDir() {
			if err := os.Remove(legacy); err != nil {
				return err
			}
		} else if err := mg.migrateDir(m, legacy); err != nil {
			return err
		}
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() {
			return nil // another machine's directory, migrated on its first use
		}
	}
	mg.ui.Printf("moved devvm's state out of the checkout (%s is gone; state now in %s)", root, m.VM.Root())
	return os.RemoveAll(root)
}

func (mg *Manager) migrateDir(m *Machine, legacy string) error {
	if err := m.VM.Ensure(); err != nil {
		return err
	}
	if mi, ok := mg.d.(Migrator); ok {
		if err := mi.MigrateLegacy(m, legacy); err != nil {
			return err
		}
	}
	rec := mg.adoptLegacy(m, legacy)
	ents, err := os.ReadDir(legacy)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "disk-") || !strings.HasSuffix(e.Name(), ".qcow2") || !e.Type().IsRegular() {
			continue
		}
		src, dst := filepath.Join(legacy, e.Name()), m.VM.Path(e.Name())
		if _, err := os.Lstat(dst); err == nil {
			continue
		}
		err := os.Rename(src, dst)
		if errors.Is(err, syscall.EXDEV) {
			if rec != nil {
				return fmt.Errorf("VM %q runs from the persistent disk %s, which cannot be moved to %s while it runs (another file system)\nhint: halt it with the devvm that started it, then run this command again", m.Name, src, dst)
			}
			err = copyFile(src, dst)
		}
		if err != nil {
			return fmt.Errorf("moving the persistent disk %s to %s: %w", src, dst, err)
		}
		os.Chmod(dst, 0o600)
		mg.ui.Printf("moved the persistent disk of VM %q to %s", m.Name, dst)
	}
	if rec != nil {
		if rec.Disk != "" {
			rec.Disk = m.VM.Path(filepath.Base(rec.Disk))
		}
		if err := mg.save(m, rec); err != nil {
			return err
		}
		mg.register(m)
		mg.ui.Printf("took over the running VM %q (pid %d) from %s", m.Name, rec.Process.PID, legacy)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := mg.waitReady(ctx, m, rec, 30*time.Second, true); err != nil {
			mg.ui.Printf("VM %q: %v", m.Name, err)
		}
	}
	return os.RemoveAll(legacy)
}

// adoptLegacy returns the record of the machine's live process named by a
// legacy record, proven from /proc, or nil.
func (mg *Manager) adoptLegacy(m *Machine, legacy string) *Record {
	ad, ok := mg.d.(Adopter)
	marker, _ := mg.d.Identity(m)
	if !ok || marker == "" {
		return nil
	}
	var old struct {
		Identity struct {
			PID int `json:"pid"`
		} `json:"identity"`
	}
	if ok, err := state.ReadJSON(filepath.Join(legacy, "runtime.json"), &old); !ok || err != nil || old.Identity.PID <= 0 {
		return nil
	}
	id, err := proc.Capture(old.Identity.PID, marker, "")
	if err != nil {
		return nil
	}
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(id.PID) + "/cmdline")
	if err != nil {
		return nil
	}
	rec, err := ad.Adopt(m, id, strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00"))
	if err != nil {
		mg.ui.Printf("VM %q runs as pid %d but devvm cannot take it over: %v", m.Name, id.PID, err)
		return nil
	}
	rec.Process, rec.Adopted = &id, true
	return rec
}

func copyFile(src, dst string) error {
	in, err := state.OpenFile(src, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := state.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Remove(src)
}
