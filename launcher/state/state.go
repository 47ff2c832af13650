// Package state owns devvm's files on the host. Nothing of it lives in the
// checkout: the checkout is shared read-write into the guest, and anything
// root in the guest can write it, so every record, key, log, disk, socket and
// lock is kept in per-user directories the guest cannot reach (docs/dev-vm.md,
// "What the guest can reach"):
//
//	$XDG_STATE_HOME/devvm/                    (0700) Dirs.State
//	  registry.json, registry.lock            every VM devvm started (devvm list)
//	  checkouts/<base>-<hash>/                (0700) one checkout, keyed by its path
//	    checkout                              the checkout's path, for people
//	    authorized_keys                       public keys the guest config authorizes
//	    <vm>/                                 (0700) one VM
//	      build.json, build.log               the last build and its output
//	      record.json                         the running VM (one schema for every backend)
//	      qemu.pid, qemu.argv, console.log    QEMU's pidfile, command line, serial console
//	      known_hosts, ssh_config             the guest host key pinned at this boot
//	      disk-<key>.qcow2                    persistent overlay (persistent = true)
//	      share-<tag>.{pid,log}               `mode = "ssh"` share servers
//	      lock                                flock held by the command working on the VM
//	$XDG_RUNTIME_DIR/devvm/<id>/ (or /tmp/devvm-<uid>/<id>/, 0700)   QMP and console sockets
//	Dirs.GCRoots/<checkout>-<vm>/run-vm-<key>  GC roots, where guix-daemon can read them
//
// Every directory is created by devvm with mode 0700 and checked (owner, mode,
// not a symbolic link) before use; every file is written through a temporary
// file and rename(2), or opened with O_NOFOLLOW, so a link planted where devvm
// writes is an error that names it, never a write to its target.
package state

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// LegacyDirName is the state directory devvm kept inside checkouts before
// it moved out of the guest's reach; Migrate takes over what it holds.
const LegacyDirName = ".devvm"

// Dirs are the user's devvm directories (hostenv.Env fills them).
type Dirs struct {
	// State holds the registry and one directory per checkout.
	State string
	// Runtime holds short-lived sockets (unix socket paths are limited to
	// 107 bytes, so it is kept short).
	Runtime string
	// GCRoots, when set, holds the GC roots of builds: a directory the
	// store's daemon can read (an unprivileged guix-daemon cannot read a
	// 0700 home, and ignores roots it cannot read). Empty: the VM directory.
	GCRoots string
}

// VM locates one VM's files.
type VM struct {
	Checkout string // absolute checkout path
	Name     string // VM name
	dirs     Dirs
}

// New returns the layout of VM name of the checkout at checkout.
func New(checkout, name string, dirs Dirs) *VM {
	return &VM{Checkout: checkout, Name: name, dirs: dirs}
}

// ID is a short stable identifier of (checkout, name), used for socket
// directories, the QEMU process marker and the registry.
func (v *VM) ID() string {
	h := sha256.Sum256([]byte(v.Checkout + "\x00" + v.Name))
	return hex.EncodeToString(h[:6])
}

// Marker is the string in QEMU's command line (-name) that proves a process
// was started by devvm for this VM.
func (v *VM) Marker() string { return "devvm-" + v.ID() }

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// CheckoutKey names a checkout's directory: its base name (for people) and
// a hash of its absolute path, so two clones never share state.
func CheckoutKey(checkout string) string {
	h := sha256.Sum256([]byte(checkout))
	base := strings.Trim(unsafeChars.ReplaceAllString(filepath.Base(checkout), "_"), "._")
	if len(base) > 32 {
		base = base[:32]
	}
	if base == "" {
		base = "checkout"
	}
	return base + "-" + hex.EncodeToString(h[:8])
}

// Root is the checkout's directory in the state dir.
func (v *VM) Root() string {
	return filepath.Join(v.dirs.State, "checkouts", CheckoutKey(v.Checkout))
}

// Dir is the VM's directory.
func (v *VM) Dir() string { return filepath.Join(v.Root(), v.Name) }

// Path returns a file in the VM's directory.
func (v *VM) Path(name string) string { return filepath.Join(v.Dir(), name) }

// Well-known files.
func (v *VM) BuildRecord() string    { return v.Path("build.json") }
func (v *VM) Record() string         { return v.Path("record.json") }
func (v *VM) Pidfile() string        { return v.Path("qemu.pid") }
func (v *VM) ConsoleLog() string     { return v.Path("console.log") }
func (v *VM) BuildLog() string       { return v.Path("build.log") }
func (v *VM) KnownHosts() string     { return v.Path("known_hosts") }
func (v *VM) SSHConfig() string      { return v.Path("ssh_config") }
func (v *VM) AuthorizedKeys() string { return filepath.Join(v.Root(), "authorized_keys") }

// Legacy is the VM's directory in the checkout's old .devvm/.
func (v *VM) Legacy() string { return filepath.Join(v.Checkout, LegacyDirName, v.Name) }

// Disk is the persistent overlay of the build with the given key.
func (v *VM) Disk(key string) string { return v.Path("disk-" + short(key) + ".qcow2") }

// GCRootDir holds the VM's GC roots.
func (v *VM) GCRootDir() string {
	if v.dirs.GCRoots == "" {
		return v.Path("gcroots")
	}
	return filepath.Join(v.dirs.GCRoots, CheckoutKey(v.Checkout)+"-"+v.Name)
}

// GCRoot is the GC root of the build with the given key.
func (v *VM) GCRoot(key string) string { return filepath.Join(v.GCRootDir(), "run-vm-"+short(key)) }

func short(key string) string {
	if len(key) > 16 {
		return key[:16]
	}
	return key
}

// RuntimeDir is the short per-VM directory for sockets.
func (v *VM) RuntimeDir() string { return filepath.Join(v.dirs.Runtime, v.ID()) }

// QMPSocket and ConsoleSocket live in RuntimeDir.
func (v *VM) QMPSocket() string     { return filepath.Join(v.RuntimeDir(), "qmp.sock") }
func (v *VM) ConsoleSocket() string { return filepath.Join(v.RuntimeDir(), "console.sock") }

// Ensure creates (or checks) the private directories of the VM: the state
// directory down to the VM's, the runtime directory and the GC root
// directory. Each must be a directory owned by this user, not a link;
// devvm's own are made 0700 (the GC root directory 0755: the daemon reads it).
func (v *VM) Ensure() error {
	for _, d := range []string{v.dirs.State, filepath.Dir(v.Root()), v.Root(), v.Dir()} {
		if err := MkdirPrivate(d); err != nil {
			return err
		}
	}
	if err := WriteFileIfChanged(filepath.Join(v.Root(), "checkout"), []byte(v.Checkout+"\n"), 0o600); err != nil {
		return err
	}
	if err := EnsureRuntimeDir(v.dirs.Runtime); err != nil {
		return err
	}
	if err := MkdirPrivate(v.RuntimeDir()); err != nil {
		return err
	}
	if v.dirs.GCRoots != "" {
		if err := mkdirOwned(v.dirs.GCRoots, 0o755); err != nil {
			return err
		}
	}
	return mkdirOwned(v.GCRootDir(), 0o755)
}

// Remove deletes the VM's directories (state, runtime, GC roots) and the
// checkout's directory when no VM is left in it.
func (v *VM) Remove() error {
	for _, d := range []string{v.Dir(), v.RuntimeDir(), v.GCRootDir()} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("removing %s: %w", d, err)
		}
	}
	ents, err := os.ReadDir(v.Root())
	if err != nil {
		return nil
	}
	for _, e := range ents {
		if e.IsDir() {
			return nil
		}
	}
	return os.RemoveAll(v.Root())
}

// ReadJSON reads a JSON record; ok is false when the file does not exist.
// The record must be a regular file (not a link) of at most 4 MiB.
func ReadJSON(path string, v any) (ok bool, err error) {
	b, err := ReadFile(path, 4<<20)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("%s is damaged (%v): remove it and run the command again", path, err)
	}
	return true, nil
}

// WriteJSON writes a record atomically (temp file + rename), mode 0600, so a
// crash never leaves half a record.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, append(b, '\n'), 0o600)
}
