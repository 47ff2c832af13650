package qemu

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// Share is a host directory exported with QEMU's virtio-9p.
type Share struct {
	Path     string // host directory
	Tag      string // mount_tag the guest config mounts
	ReadOnly bool
}

// Forward is a host→guest port forward on QEMU's user network.
type Forward struct {
	Proto string // tcp or udp
	Bind  string // host address
	Host  int
	Guest int
}

// Config is what devvm adds to the script's QEMU command line.
type Config struct {
	RunVM     *RunVM
	KVM       bool   // use KVM (else TCG)
	MemoryMiB uint64 // -m
	CPUs      int    // -smp
	SSHPort   int    // host port forwarded to guest 22 on 127.0.0.1
	Forwards  []Forward
	Shares    []Share
	Marker    string // -name, proves the process is ours
	QMP       string // QMP unix socket
	Pidfile   string
	// ConsoleSocket and ConsoleLog receive the serial console when the VM
	// runs detached; Foreground puts it on this terminal instead.
	ConsoleSocket string
	ConsoleLog    string
	Foreground    bool
	// Disk is the writable qcow2 overlay of a persistent VM ("" = volatile).
	Disk string
}

// Escape doubles commas, as QEMU's option parser requires inside values.
func Escape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// Argv builds the final QEMU command line.
func Argv(c Config) ([]string, error) {
	if c.RunVM == nil || len(c.RunVM.Argv) == 0 {
		return nil, fmt.Errorf("no VM script")
	}
	if c.Marker == "" || c.QMP == "" || c.Pidfile == "" {
		return nil, fmt.Errorf("internal: marker, QMP socket and pidfile are required")
	}
	if len(c.QMP) > 107 || len(c.ConsoleSocket) > 107 {
		return nil, fmt.Errorf("socket path longer than 107 bytes (%s): set XDG_RUNTIME_DIR to a shorter directory", c.QMP)
	}
	src := c.RunVM.Argv
	argv := []string{src[0]}
	for i := 1; i < len(src); i++ {
		a := src[i]
		switch a {
		case "-enable-kvm", "-nographic", "-daemonize", "-snapshot":
			// Accelerator, display and detaching are chosen at launch.
			continue
		case "-m", "-smp", "-nic", "-netdev", "-display", "-pidfile", "-qmp", "-serial", "-name", "-accel":
			i++ // devvm sets these itself
			continue
		case "-drive":
			if i+1 < len(src) && c.RunVM.Persistent && strings.Contains(src[i+1], "file=/tmp/guix-image-") {
				if c.Disk == "" {
					return nil, fmt.Errorf("the VM was built with --persistent but no disk was given")
				}
				argv = append(argv, "-drive", "file="+Escape(c.Disk)+",format=qcow2,if=virtio,cache=writeback,werror=report")
				i++
				continue
			}
		}
		argv = append(argv, a)
	}
	argv = append(argv, "-name", c.Marker)
	if c.KVM {
		argv = append(argv, "-enable-kvm", "-cpu", "host")
	} else {
		argv = append(argv, "-accel", "tcg")
	}
	argv = append(argv, "-m", strconv.FormatUint(c.MemoryMiB, 10), "-smp", strconv.Itoa(c.CPUs))

	nic := "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:" + strconv.Itoa(c.SSHPort) + "-:22"
	for _, f := range c.Forwards {
		nic += fmt.Sprintf(",hostfwd=%s:%s:%d-:%d", f.Proto, f.Bind, f.Host, f.Guest)
	}
	argv = append(argv, "-nic", nic)
	for _, s := range c.Shares {
		v := "local,path=" + Escape(filepath.Clean(s.Path)) + ",security_model=none,mount_tag=" + s.Tag
		if s.ReadOnly {
			v += ",readonly=on"
		}
		argv = append(argv, "-virtfs", v)
	}
	argv = append(argv,
		"-qmp", "unix:"+Escape(c.QMP)+",server=on,wait=off",
		"-pidfile", c.Pidfile,
		"-display", "none",
	)
	if c.Foreground {
		// Ctrl-C goes to the guest (signal=off); Ctrl-a x quits QEMU.
		argv = append(argv,
			"-chardev", "stdio,id=devvm-serial,mux=on,signal=off,logfile="+Escape(c.ConsoleLog)+",logappend=off",
			"-serial", "chardev:devvm-serial", "-mon", "chardev=devvm-serial,mode=readline")
	} else {
		argv = append(argv,
			"-chardev", "socket,id=devvm-serial,path="+Escape(c.ConsoleSocket)+",server=on,wait=off,logfile="+Escape(c.ConsoleLog)+",logappend=off",
			"-serial", "chardev:devvm-serial",
			"-daemonize")
	}
	return argv, nil
}

// OverlayBacking returns the store disk image a persistent script's
// /tmp/guix-image-<name> overlay is made from (<store>/<name>).
func OverlayBacking(r *RunVM) (string, error) {
	for i, a := range r.Argv {
		if a == "-drive" && i+1 < len(r.Argv) {
			for _, kv := range strings.Split(r.Argv[i+1], ",") {
				if name, ok := strings.CutPrefix(kv, "file=/tmp/guix-image-"); ok {
					return filepath.Join(r.StoreDir, name), nil
				}
			}
		}
	}
	return "", fmt.Errorf("the persistent VM script has no /tmp/guix-image-* drive")
}
