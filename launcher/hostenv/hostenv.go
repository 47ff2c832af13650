// Package hostenv holds what devvm reads from the host it runs on: the XDG
// directories, the clock, how to run programs, and whether KVM is usable.
// Everything is a field so tests can point it at temporary roots and stand-ins.
package hostenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/devvm/devvm/launcher/state"
)

// Env is the host as devvm sees it.
type Env struct {
	// DataDir holds the user's devvm key (XDG data dir + /devvm).
	DataDir string
	// StateDir holds the user-wide registry of VMs (XDG state dir + /devvm).
	StateDir string
	// RuntimeDir holds short-lived sockets; kept short because unix socket
	// paths are limited to 107 bytes.
	RuntimeDir string
	// GCRootsDir holds the GC roots of builds where the store's daemon can
	// read them (an unprivileged guix-daemon cannot read a 0700 home and
	// ignores roots it cannot read); empty: in each VM's state directory.
	GCRootsDir string
	// KVMDevice and CPUInfo are read to decide the accelerator.
	KVMDevice string
	CPUInfo   string
	// Now is the clock.
	Now func() time.Time
	// LookPath finds programs (exec.LookPath).
	LookPath func(string) (string, error)
	// Command builds a command to run (exec.CommandContext).
	Command func(ctx context.Context, name string, args ...string) *exec.Cmd
}

// FromOS returns the real host environment, honouring XDG_DATA_HOME,
// XDG_STATE_HOME and XDG_RUNTIME_DIR.
func FromOS() *Env {
	home, _ := os.UserHomeDir()
	xdg := func(env, def string) string {
		if v := os.Getenv(env); v != "" && filepath.IsAbs(v) {
			return v
		}
		return filepath.Join(home, def)
	}
	rt := os.Getenv("XDG_RUNTIME_DIR")
	if rt == "" || !filepath.IsAbs(rt) || len(rt) > 40 {
		rt = filepath.Join(os.TempDir(), "devvm-"+strconv.Itoa(os.Getuid()))
	} else {
		rt = filepath.Join(rt, "devvm")
	}
	return &Env{
		DataDir:    filepath.Join(xdg("XDG_DATA_HOME", ".local/share"), "devvm"),
		StateDir:   filepath.Join(xdg("XDG_STATE_HOME", ".local/state"), "devvm"),
		RuntimeDir: rt,
		GCRootsDir: guixRootsDir(),
		KVMDevice:  "/dev/kvm",
		CPUInfo:    "/proc/cpuinfo",
		Now:        time.Now,
		LookPath:   exec.LookPath,
		Command:    exec.CommandContext,
	}
}

// Dirs are the directories devvm keeps its state in.
func (e *Env) Dirs() state.Dirs {
	return state.Dirs{State: e.StateDir, Runtime: e.RuntimeDir, GCRoots: e.GCRootsDir}
}

// guixPerUser is where guix-daemon keeps each user's profiles (world
// readable, owned by the user): guix:nix/libstore/local-store.cc creates
// /var/guix/profiles/per-user/$USER for every user who connects.
const guixPerUser = "/var/guix/profiles/per-user"

// guixRootsDir is devvm's GC root directory under the user's per-user
// profile directory, when that exists and belongs to the user; Guix moved
// its own roots out of unreadable homes the same way (commit d12c4452a49).
func guixRootsDir() string {
	u, err := user.Current()
	if err != nil {
		return ""
	}
	dir := filepath.Join(guixPerUser, u.Username)
	st, err := os.Lstat(dir)
	if err != nil || !st.IsDir() {
		return ""
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); !ok || int(sys.Uid) != os.Geteuid() {
		return ""
	}
	return filepath.Join(dir, "devvm")
}

// KVM tells whether QEMU can use KVM here, and why not.
type KVM struct {
	Usable bool
	Reason string // why not, for people
}

// KVM checks that the KVM device can be opened read-write AND that the CPU
// advertises hardware virtualization (vmx or svm). A /dev/kvm without the CPU
// flag exists on some nested hosts, and a KVM guest hangs there.
func (e *Env) KVM() KVM {
	f, err := os.OpenFile(e.KVMDevice, os.O_RDWR, 0)
	if err != nil {
		if os.IsNotExist(err) {
			return KVM{Reason: e.KVMDevice + " does not exist (no kvm module loaded, or no hardware virtualization)"}
		}
		return KVM{Reason: fmt.Sprintf("%s is not accessible: %v (add yourself to the kvm group)", e.KVMDevice, unwrapPath(err))}
	}
	f.Close()
	info, err := os.ReadFile(e.CPUInfo)
	if err != nil {
		return KVM{Reason: "cannot read " + e.CPUInfo + ": " + err.Error()}
	}
	for _, line := range bytes.Split(info, []byte("\n")) {
		if !bytes.HasPrefix(line, []byte("flags")) {
			continue
		}
		for _, fl := range strings.Fields(string(line)) {
			if fl == "vmx" || fl == "svm" {
				return KVM{Usable: true}
			}
		}
	}
	return KVM{Reason: "the CPU has no vmx/svm flag (nested virtualization off?): a KVM guest would hang"}
}

func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
