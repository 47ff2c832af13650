package guixvm

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/devvm/devvm/launcher/machine"
	"github.com/devvm/devvm/launcher/proc"
	"github.com/devvm/devvm/launcher/qemu"
	"github.com/devvm/devvm/launcher/state"
	"github.com/devvm/devvm/launcher/vmfile"
)

// Start implements machine.Driver: QEMU from the build's run-vm.sh, with
// devvm's accelerator, SSH port, forwards, shares, sockets and disk.
func (d *Driver) Start(ctx context.Context, m *machine.Machine, b *machine.Build, fg bool) (*machine.Record, error) {
	if err := d.valid(m, b); err != nil {
		return nil, fmt.Errorf("not booting build %s: %v\nhint: `devvm build --rebuild` builds it again", b.Key, err)
	}
	rec, cfg, err := d.prepare(m, b, fg)
	if err != nil {
		return nil, err
	}
	argv, err := qemu.Argv(cfg)
	if err != nil {
		return nil, err
	}
	rec.Argv = argv
	d.ui.Debugf("$ %s", strings.Join(argv, " "))
	if err := state.WriteFileAtomic(m.VM.Path("qemu.argv"), []byte(strings.Join(argv, "\n")+"\n"), 0o600); err != nil {
		return nil, err
	}
	if f, err := state.CreateFile(m.VM.ConsoleLog(), 0o600); err == nil {
		f.Close()
	} else {
		return nil, err
	}
	if fg {
		return d.startForeground(m, rec)
	}
	d.ui.Printf("starting QEMU (%s)", rec.Accel)
	var pid int
	for attempt := 0; ; attempt++ {
		pid, err = qemu.StartDetached(ctx, d.env.Command, rec.Argv, m.VM.Pidfile())
		if err == nil || !qemu.HostfwdBusy(err) || d.vf.SSHPortPinned || attempt > 3 {
			break
		}
		// Lost a race for the port: take the next free one.
		port, perr := qemu.PickSSHPort(rec.SSHPort+1, false)
		if perr != nil {
			break
		}
		rec.Argv = replacePort(rec.Argv, rec.SSHPort, port)
		rec.SSHPort = port
	}
	if err != nil {
		return nil, fmt.Errorf("%v\nhint: the full command line is in %s; `devvm doctor` checks QEMU", err, m.VM.Path("qemu.argv"))
	}
	id, err := proc.Capture(pid, m.VM.Marker(), m.VM.Pidfile())
	if err != nil {
		return nil, fmt.Errorf("QEMU started as pid %d but devvm cannot verify it: %v", pid, err)
	}
	rec.Process, rec.Started = &id, d.env.Now()
	d.ui.Printf("QEMU is running as pid %d; serial console: %s", pid, m.VM.ConsoleLog())
	return rec, nil
}

// startForeground runs QEMU on this terminal; the record's wait ends with it.
func (d *Driver) startForeground(m *machine.Machine, rec *machine.Record) (*machine.Record, error) {
	d.ui.Printf("starting QEMU (%s) in the foreground: Ctrl-a x quits, Ctrl-a h for help", rec.Accel)
	cmd := d.env.Command(context.Background(), rec.Argv[0], rec.Argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting QEMU: %w", err)
	}
	rec.SetWait(cmd.Wait)
	// Record the identity once QEMU has written and locked its pidfile.
	for i := 0; i < 100; i++ {
		if pid, _ := proc.PidfileLockHolder(m.VM.Pidfile()); pid == cmd.Process.Pid {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if id, err := proc.Capture(cmd.Process.Pid, m.VM.Marker(), m.VM.Pidfile()); err == nil {
		rec.Process = &id
	}
	rec.Started = d.env.Now()
	return rec, nil
}

// prepare chooses accelerator and port, readies the disk and builds the
// QEMU configuration.
func (d *Driver) prepare(m *machine.Machine, b *machine.Build, fg bool) (*machine.Record, qemu.Config, error) {
	script, err := qemu.ParseRunVM(b.Artifact)
	if err != nil {
		return nil, qemu.Config{}, err
	}
	kvm := d.env.KVM()
	accel := "kvm"
	if !kvm.Usable {
		accel = "tcg"
		d.ui.Printf("warning: KVM is not usable (%s); running under TCG, which is much slower", kvm.Reason)
	}
	port, err := qemu.PickSSHPort(d.vf.SSH.Port, d.vf.SSHPortPinned)
	if err != nil {
		if d.vf.SSHPortPinned {
			return nil, qemu.Config{}, d.vf.KeyError("ssh.port", "%v", err)
		}
		return nil, qemu.Config{}, err
	}
	if port != d.vf.SSH.Port {
		d.ui.Printf("port %d is in use%s; using %d for SSH (pin ssh.port in the Vmfile to forbid this)", d.vf.SSH.Port, portOwner(d.vf.SSH.Port), port)
	}
	for _, f := range d.vf.Forwards {
		if f.Proto == "tcp" && !qemu.PortFree(f.Bind, f.Host) {
			return nil, qemu.Config{}, fmt.Errorf("%s: forward %s:%d → guest %d: the host port is in use%s; change the forward's host port in the Vmfile",
				d.vf.Path, f.Bind, f.Host, f.Guest, portOwner(f.Host))
		}
	}
	rec := &machine.Record{Accel: accel, SSHHost: "127.0.0.1", SSHPort: port, BuildKey: b.Key, Artifact: b.Artifact, Console: !fg}
	cfg := qemu.Config{
		RunVM: script, KVM: kvm.Usable, MemoryMiB: d.vf.Memory.MiB(), CPUs: d.vf.CPUs, SSHPort: port,
		Marker: m.VM.Marker(), QMP: m.VM.QMPSocket(), Pidfile: m.VM.Pidfile(),
		ConsoleSocket: m.VM.ConsoleSocket(), ConsoleLog: m.VM.ConsoleLog(), Foreground: fg,
	}
	for _, f := range d.vf.Forwards {
		cfg.Forwards = append(cfg.Forwards, qemu.Forward{Proto: f.Proto, Bind: f.Bind, Host: f.Host, Guest: f.Guest})
		rec.Forwards = append(rec.Forwards, fmt.Sprintf("%s:%d → %d/%s", f.Bind, f.Host, f.Guest, f.Proto))
	}
	for _, s := range d.vf.Shares {
		if s.Mode != vmfile.ShareVirtio {
			continue
		}
		cfg.Shares = append(cfg.Shares, qemu.Share{Path: d.vf.Resolve(s.Host), Tag: s.Tag, ReadOnly: s.ReadOnly})
		mode := "rw"
		if s.ReadOnly {
			mode = "ro"
		}
		rec.Shares = append(rec.Shares, fmt.Sprintf("%s → %s (%s)", d.vf.Resolve(s.Host), s.Guest, mode))
	}
	if script.Persistent {
		disk, err := d.prepareDisk(m, script, b.Key)
		if err != nil {
			return nil, qemu.Config{}, err
		}
		cfg.Disk, rec.Disk = disk, disk
	}
	return rec, cfg, nil
}

func portOwner(port int) string {
	if o := qemu.PortOwner(port); o != "" {
		return " by " + o
	}
	return ""
}

func replacePort(argv []string, old, port int) []string {
	out := append([]string(nil), argv...)
	for i, a := range out {
		out[i] = strings.Replace(a, fmt.Sprintf("hostfwd=tcp:127.0.0.1:%d-:22", old), fmt.Sprintf("hostfwd=tcp:127.0.0.1:%d-:22", port), 1)
	}
	return out
}

// prepareDisk creates the persistent overlay of this build in the VM's
// state (instead of guix's shared /tmp/guix-image-* that nobody cleans), or
// checks the existing one: its backing file must be this build's image,
// read by `qemu-img info` (a disk devvm did not make could name any host
// file as its backing file and hand it to the guest).
func (d *Driver) prepareDisk(m *machine.Machine, script *qemu.RunVM, key string) (string, error) {
	backing, err := qemu.OverlayBacking(script)
	if err != nil {
		return "", err
	}
	disk := m.VM.Disk(key)
	if st, err := os.Lstat(disk); err == nil {
		if !st.Mode().IsRegular() {
			return "", fmt.Errorf("the persistent disk %s is not a regular file (a link?): devvm refuses to boot it; remove it (its guest data is lost) or restore the file devvm made", disk)
		}
		if err := d.checkBacking(disk, backing); err != nil {
			return "", err
		}
		return disk, nil
	}
	if others, _ := filepath.Glob(m.VM.Path("disk-*.qcow2")); len(others) > 0 {
		d.ui.Printf("note: this build starts with a new persistent disk; the disk of the previous build stays at %s until `devvm gc`", strings.Join(others, ", "))
	}
	args := []string{"create", "-q", "-f", "qcow2", "-b", backing, "-F", "raw", disk}
	d.ui.Debugf("$ qemu-img %s", strings.Join(args, " "))
	out, err := d.env.Command(context.Background(), "qemu-img", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("creating the persistent disk %s: %v: %s (is qemu-img installed? `devvm doctor`)", disk, err, strings.TrimSpace(string(out)))
	}
	if err := os.Chmod(disk, 0o600); err != nil {
		return "", err
	}
	return disk, nil
}

// checkBacking refuses a disk whose backing chain is not exactly this
// build's store image, raw.
func (d *Driver) checkBacking(disk, backing string) error {
	out, err := d.env.Command(context.Background(), "qemu-img", "info", "--output=json", "-U", disk).Output()
	if err != nil {
		return fmt.Errorf("reading the persistent disk %s with `qemu-img info`: %v", disk, err)
	}
	var info struct {
		Format        string `json:"format"`
		Backing       string `json:"full-backing-filename"`
		BackingFormat string `json:"backing-filename-format"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return fmt.Errorf("reading the persistent disk %s: `qemu-img info` printed %q", disk, out)
	}
	if info.Format != "qcow2" || info.Backing != backing || info.BackingFormat != "raw" {
		return fmt.Errorf("the persistent disk %s is not the one devvm made for this build: it is %s backed by %q (%s), not qcow2 backed by %s (raw); devvm refuses to boot it\nhint: if you did not put it there, remove it; its guest data is lost", disk, info.Format, info.Backing, info.BackingFormat, backing)
	}
	return nil
}

var hostfwdSSH = regexp.MustCompile(`hostfwd=tcp:127\.0\.0\.1:([0-9]+)-:22(,|$)`)

// Adopt implements machine.Adopter: a QEMU started by an older devvm, from
// its own command line.
func (d *Driver) Adopt(m *machine.Machine, id proc.Identity, argv []string) (*machine.Record, error) {
	rec := &machine.Record{Accel: "tcg", SSHHost: "127.0.0.1", Console: true, Argv: argv, Started: time.UnixMilli(id.StartTime)}
	for i, a := range argv {
		if a == "-enable-kvm" || strings.Contains(a, "accel=kvm") {
			rec.Accel = "kvm"
		}
		if mm := hostfwdSSH.FindStringSubmatch(a); mm != nil {
			rec.SSHPort, _ = strconv.Atoi(mm[1])
		}
		if a == "-drive" && i+1 < len(argv) {
			for _, kv := range strings.Split(argv[i+1], ",") {
				if f, ok := strings.CutPrefix(kv, "file="); ok && strings.HasSuffix(f, ".qcow2") {
					rec.Disk = f
				}
			}
		}
	}
	if rec.SSHPort == 0 {
		return nil, fmt.Errorf("its command line forwards no SSH port")
	}
	return rec, nil
}
