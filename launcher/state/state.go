// Package state owns devvm's files: the per-checkout state directory
// `.devvm/` (one subdirectory per VM), the short runtime directory for
// sockets, the per-VM command lock and the user-wide registry of VMs.
//
// Layout of a checkout's .devvm/ (documented in docs/dev-vm.md):
//
//	.devvm/authorized_keys      public keys the guest config authorizes
//	.devvm/<vm>/build.json      the last build: key, run-vm.sh, GC root
//	.devvm/<vm>/gcroots/        GC roots of builds (run-vm-<key>)
//	.devvm/<vm>/runtime.json    the running VM: pid identity, ports, sockets
//	.devvm/<vm>/qemu.pid        QEMU's -pidfile (locked by QEMU while it runs)
//	.devvm/<vm>/console.log     serial console of the current boot
//	.devvm/<vm>/build.log       output of the last guix run
//	.devvm/<vm>/known_hosts     the guest host key pinned at this boot
//	.devvm/<vm>/ssh_config      OpenSSH stanza for this VM
//	.devvm/<vm>/disk-<key>.qcow2  persistent overlay (persistent = true)
//	.devvm/<vm>/lock            flock held by the command working on the VM
package state

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// DirName is the state directory in a checkout.
const DirName = ".devvm"

// VM locates one VM's files.
type VM struct {
	Checkout   string // absolute checkout path
	Name       string // VM name
	runtimeDir string // user runtime dir (hostenv.Env.RuntimeDir)
}

// New returns the layout of VM name in checkout; runtimeDir is the user's
// devvm runtime directory.
func New(checkout, name, runtimeDir string) *VM {
	return &VM{Checkout: checkout, Name: name, runtimeDir: runtimeDir}
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

// Root is <checkout>/.devvm.
func (v *VM) Root() string { return filepath.Join(v.Checkout, DirName) }

// Dir is <checkout>/.devvm/<name>.
func (v *VM) Dir() string { return filepath.Join(v.Root(), v.Name) }

// Path returns a file in the VM's directory.
func (v *VM) Path(name string) string { return filepath.Join(v.Dir(), name) }

// Well-known files.
func (v *VM) BuildRecord() string    { return v.Path("build.json") }
func (v *VM) RuntimeRecord() string  { return v.Path("runtime.json") }
func (v *VM) GCRootDir() string      { return v.Path("gcroots") }
func (v *VM) Pidfile() string        { return v.Path("qemu.pid") }
func (v *VM) ConsoleLog() string     { return v.Path("console.log") }
func (v *VM) BuildLog() string       { return v.Path("build.log") }
func (v *VM) KnownHosts() string     { return v.Path("known_hosts") }
func (v *VM) SSHConfig() string      { return v.Path("ssh_config") }
func (v *VM) AuthorizedKeys() string { return filepath.Join(v.Root(), "authorized_keys") }

// Disk is the persistent overlay of the build with the given key.
func (v *VM) Disk(key string) string { return v.Path("disk-" + short(key) + ".qcow2") }

// GCRoot is the GC root of the build with the given key.
func (v *VM) GCRoot(key string) string { return filepath.Join(v.GCRootDir(), "run-vm-"+short(key)) }

func short(key string) string {
	if len(key) > 16 {
		return key[:16]
	}
	return key
}

// RuntimeDir is the short per-VM directory for sockets.
func (v *VM) RuntimeDir() string { return filepath.Join(v.runtimeDir, v.ID()) }

// QMPSocket and ConsoleSocket live in RuntimeDir.
func (v *VM) QMPSocket() string     { return filepath.Join(v.RuntimeDir(), "qmp.sock") }
func (v *VM) ConsoleSocket() string { return filepath.Join(v.RuntimeDir(), "console.sock") }

// Ensure creates the VM directory, the runtime directory (0700) and makes
// sure .devvm is ignored by git even when init was not run.
func (v *VM) Ensure() error {
	if err := os.MkdirAll(v.GCRootDir(), 0o755); err != nil {
		return fmt.Errorf("creating state directory: %w", err)
	}
	if err := os.MkdirAll(v.RuntimeDir(), 0o700); err != nil {
		return fmt.Errorf("creating runtime directory: %w", err)
	}
	ign := filepath.Join(v.Root(), ".gitignore")
	if _, err := os.Stat(ign); errors.Is(err, os.ErrNotExist) {
		return os.WriteFile(ign, []byte("# devvm state: never commit\n*\n"), 0o644)
	}
	return nil
}

// ReadJSON reads a JSON record; ok is false when the file does not exist.
func ReadJSON(path string, v any) (ok bool, err error) {
	b, err := os.ReadFile(path)
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

// WriteJSON writes a record atomically (temp file + rename), so a crash
// never leaves half a record.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, append(b, '\n'), 0o644)
}

// WriteFileAtomic writes data to path through a temp file and rename.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(tmp, mode)
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		os.Remove(tmp)
	}
	return werr
}
