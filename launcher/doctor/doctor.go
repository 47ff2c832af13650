// Package doctor checks what a Vmfile's backend needs on this host, one
// line per check with a fix (`devvm doctor`).
package doctor

import (
	"context"
	"github.com/devvm/devvm/launcher/backend"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/machine"
	"github.com/devvm/devvm/launcher/microvm"
	"github.com/devvm/devvm/launcher/qemu"
	"github.com/devvm/devvm/launcher/state"
	"github.com/devvm/devvm/launcher/vmfile"
)

// Check is one line of `devvm doctor`.
type Check = backend.Check

// DaemonSocket is where guix-daemon listens by default.
var DaemonSocket = "/var/guix/daemon-socket/socket"

// Run checks this host for the Vmfile's backend (Guix and QEMU when vf is
// nil). vf may be nil with vfErr saying why the Vmfile did not load.
func Run(ctx context.Context, env *hostenv.Env, dir string, vf *vmfile.Vmfile, vfErr error) []Check {
	var out []Check
	if vfErr != nil {
		out = append(out, Check{Name: "vmfile", Required: true, Detail: vfErr.Error(), Fix: "fix the Vmfile line named above (docs/vmfile.md), or run `devvm init`"})
	} else {
		out = append(out, Check{Name: "vmfile", OK: true, Required: true, Detail: vf.Path + " is valid"})
	}
	out = append(out, stateDir(env))
	if vf != nil && vf.Backend == vmfile.BackendMicroVM {
		return append(out, microvm.DoctorChecks(ctx, env, vf)...)
	}
	out = append(out, guixChecks(ctx, env, vf)...)
	out = append(out, qemuChecks(ctx, env, vf)...)
	return out
}

// stateDir checks where devvm keeps its state.
func stateDir(env *hostenv.Env) Check {
	if err := state.MkdirPrivate(env.StateDir); err != nil {
		return Check{Name: "state", Required: true, Detail: err.Error(), Fix: "set XDG_STATE_HOME to a directory of yours"}
	}
	if err := state.EnsureRuntimeDir(env.RuntimeDir); err != nil {
		return Check{Name: "state", Required: true, Detail: err.Error(), Fix: "set XDG_RUNTIME_DIR to a private directory of yours (0700)"}
	}
	return Check{Name: "state", OK: true, Required: true, Detail: "state in " + env.StateDir + ", sockets in " + env.RuntimeDir + " (both 0700, outside every share)"}
}

func guixChecks(ctx context.Context, env *hostenv.Env, vf *vmfile.Vmfile) []Check {
	var out []Check
	add := func(c Check) { out = append(out, c) }
	if env.GCRootsDir != "" {
		add(Check{Name: "gc-roots", OK: true, Detail: "GC roots of builds go to " + env.GCRootsDir + ", which guix-daemon can read"})
	} else {
		add(Check{Name: "gc-roots", Detail: "no /var/guix/profiles/per-user/<you> directory: GC roots of builds stay in " + env.StateDir + ", which an unprivileged guix-daemon cannot read (then `guix gc` may collect a VM's closure)",
			Fix: "run any guix command once (guix-daemon creates the per-user directory), then `devvm up` again"})
	}
	if vf != nil && env.GCRootsDir != "" {
		add(timeMachineCache(vf, filepath.Dir(env.GCRootsDir), env.Now()))
	}
	guixCmd := "guix"
	if vf != nil && vf.Guix.Command != "" {
		guixCmd = vf.Guix.Command
	}
	if p, err := env.LookPath(guixCmd); err != nil {
		add(Check{Name: "guix", Required: true, Detail: guixCmd + " not found on PATH",
			Fix: "install GNU Guix (https://guix.gnu.org/manual/en/html_node/Binary-Installation.html) or set [guix] command in the Vmfile"})
	} else {
		add(Check{Name: "guix", OK: true, Required: true, Detail: firstLine(run(ctx, env, p, "--version")) + " (" + p + ")"})
	}
	if sock := daemonSocket(); sock != "" {
		c, err := net.DialTimeout("unix", sock, 2*time.Second)
		if err != nil {
			add(Check{Name: "guix-daemon", Required: true, Detail: "cannot connect to " + sock + ": " + err.Error(),
				Fix: "start it: `sudo systemctl start guix-daemon` (or `sudo guix-daemon --build-users-group=guixbuild &`)"})
		} else {
			c.Close()
			add(Check{Name: "guix-daemon", OK: true, Required: true, Detail: "answering on " + sock})
		}
	}
	return out
}

func qemuChecks(ctx context.Context, env *hostenv.Env, vf *vmfile.Vmfile) []Check {
	var out []Check
	add := func(c Check) { out = append(out, c) }

	qemuBin := "qemu-system-x86_64"
	if p, err := env.LookPath(qemuBin); err != nil {
		add(Check{Name: "qemu", Required: vf != nil && vf.Persistent, Detail: qemuBin + " not found on PATH (the VM runs the QEMU guix builds; the host's is used for checks and qemu-img)",
			Fix: "install it: `sudo apt-get install qemu-system-x86 qemu-utils` (or `guix install qemu`)"})
	} else {
		add(Check{Name: "qemu", OK: true, Required: true, Detail: firstLine(run(ctx, env, p, "--version"))})
		devs := run(ctx, env, p, "-device", "help")
		if strings.Contains(devs, "virtio-9p-pci") {
			add(Check{Name: "9p", OK: true, Required: true, Detail: "QEMU has virtio-9p (virtfs) for the shares"})
		} else {
			add(Check{Name: "9p", Required: true, Detail: "this QEMU lacks virtio-9p-pci: shares cannot be mounted",
				Fix: "install a QEMU built with virtfs (Debian: qemu-system-x86)"})
		}
	}
	if _, err := env.LookPath("qemu-img"); err != nil {
		add(Check{Name: "qemu-img", Required: vf != nil && vf.Persistent, Detail: "qemu-img not found (needed for persistent = true)",
			Fix: "`sudo apt-get install qemu-utils`"})
	}
	if k := env.KVM(); k.Usable {
		add(Check{Name: "kvm", OK: true, Detail: "KVM is usable"})
	} else {
		add(Check{Name: "kvm", Detail: "KVM not usable: " + k.Reason + "; VMs run under TCG, slower",
			Fix: "enable virtualization in the firmware / nested virtualization, load kvm_intel or kvm_amd, and make /dev/kvm read-write for you (kvm group)"})
	}
	if vf != nil {
		port := vf.SSH.Port
		vm := state.New(vf.Dir, vf.Name, env.Dirs())
		var rec machine.Record
		ours, _ := state.ReadJSON(vm.Record(), &rec)
		switch {
		case ours && rec.SSHPort == port:
			add(Check{Name: "ssh-port", OK: true, Required: true, Detail: "127.0.0.1:" + strconv.Itoa(port) + " is used by this VM"})
		case qemu.PortFree("127.0.0.1", port):
			add(Check{Name: "ssh-port", OK: true, Required: true, Detail: "127.0.0.1:" + strconv.Itoa(port) + " is free"})
		case vf.SSHPortPinned:
			add(Check{Name: "ssh-port", Required: true, Detail: "127.0.0.1:" + strconv.Itoa(port) + " is in use" + portOwner(port) + " and the Vmfile pins it",
				Fix: "free the port or change ssh.port in the Vmfile"})
		default:
			add(Check{Name: "ssh-port", OK: true, Detail: "127.0.0.1:" + strconv.Itoa(port) + " is in use" + portOwner(port) + "; `up` will take the next free port"})
		}
	}
	return out
}

func daemonSocket() string {
	if s := os.Getenv("GUIX_DAEMON_SOCKET"); s != "" {
		if strings.Contains(s, "://") {
			return "" // remote daemon: not checked here
		}
		return s
	}
	return DaemonSocket
}

func run(ctx context.Context, env *hostenv.Env, name string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := env.Command(ctx, name, args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return err.Error()
	}
	return string(out)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

func portOwner(port int) string {
	if o := qemu.PortOwner(port); o != "" {
		return " by " + o
	}
	return ""
}
