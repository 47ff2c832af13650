package qemu

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// realSample is the run-vm.sh GNU Guix 1.5.0 generated (notes:
// guix-run-vm-sample.md §1), verbatim.
const realSample = `#!/gnu/store/p5dap5q3wfdy0h3m31q5hbj3gpbkmrxv-bash-5.2.37/bin/sh
exec /gnu/store/m620f3qhdl0dmm2bmmmhnbkij6z97z27-qemu-10.1.0/bin/qemu-system-x86_64 -kernel /gnu/store/pbpfl2ll5qz36bqfnl3g3vvag764714h-linux-libre-6.17.12/bzImage -initrd /gnu/store/8612iv456arcrq5nqbkp9mjvg8x527vx-system/initrd -append "root=/dev/vda1 gnu.system=/gnu/store/8612iv456arcrq5nqbkp9mjvg8x527vx-system gnu.load=/gnu/store/8612iv456arcrq5nqbkp9mjvg8x527vx-system/boot console=ttyS0 modprobe.blacklist=usbmouse,usbkbd quiet" -enable-kvm -object rng-random,filename=/dev/urandom,id=guix-vm-rng -device virtio-rng-pci,rng=guix-vm-rng -virtfs local,path=/gnu/store,security_model=none,mount_tag=TAGjoptajej2oynju6yvboauz7pl6uj -drive file=/gnu/store/2ggci14fya3az2nlhyr1jh0a31af179r-disk-image,format=raw,if=virtio,cache=writeback,werror=report,readonly=on -m 512 "$@"
`

func TestParseRealSample(t *testing.T) {
	r, err := ParseRunVMText(realSample)
	if err != nil {
		t.Fatal(err)
	}
	if r.StoreDir != "/gnu/store" || r.Persistent {
		t.Errorf("store %q persistent %v", r.StoreDir, r.Persistent)
	}
	if len(r.Argv) != 18 {
		t.Errorf("argv has %d words: %q", len(r.Argv), r.Argv)
	}
	if r.Argv[0] != "/gnu/store/m620f3qhdl0dmm2bmmmhnbkij6z97z27-qemu-10.1.0/bin/qemu-system-x86_64" {
		t.Errorf("program %q", r.Argv[0])
	}
	i := slices.Index(r.Argv, "-append")
	if i < 0 || !strings.HasPrefix(r.Argv[i+1], "root=/dev/vda1 gnu.system=") || !strings.HasSuffix(r.Argv[i+1], "usbkbd quiet") {
		t.Errorf("-append value not unquoted as one word: %q", r.Argv[i+1])
	}
}

func TestParseOtherStore(t *testing.T) {
	// Guix configured with another store directory: nothing is hard-coded.
	s := strings.ReplaceAll(realSample, "/gnu/store", "/opt/guix/store")
	r, err := ParseRunVMText(s)
	if err != nil {
		t.Fatal(err)
	}
	if r.StoreDir != "/opt/guix/store" {
		t.Errorf("store %q", r.StoreDir)
	}
}

func TestParsePersistent(t *testing.T) {
	s := strings.Replace(realSample, "\nexec ", "\n/gnu/store/zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-copy-image\nexec ", 1)
	s = strings.Replace(s, "file=/gnu/store/2ggci14fya3az2nlhyr1jh0a31af179r-disk-image,format=raw,if=virtio,cache=writeback,werror=report,readonly=on",
		"file=/tmp/guix-image-2ggci14fya3az2nlhyr1jh0a31af179r-disk-image,format=qcow2,if=virtio", 1)
	r, err := ParseRunVMText(s)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Persistent {
		t.Fatal("copy-image line not recognised")
	}
	b, err := OverlayBacking(r)
	if err != nil || b != "/gnu/store/2ggci14fya3az2nlhyr1jh0a31af179r-disk-image" {
		t.Errorf("backing %q %v", b, err)
	}
	argv, err := Argv(Config{RunVM: r, MemoryMiB: 1024, CPUs: 2, SSHPort: 10022, Marker: "devvm-x", QMP: "/run/q", Pidfile: "/p", ConsoleSocket: "/run/c", ConsoleLog: "/l", Disk: "/home/a,b/disk.qcow2"})
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(argv, " ")
	if strings.Contains(joined, "/tmp/guix-image") || !strings.Contains(joined, "file=/home/a,,b/disk.qcow2,format=qcow2") {
		t.Errorf("persistent drive not replaced by devvm's disk: %s", joined)
	}
	if _, err := Argv(Config{RunVM: r, Marker: "m", QMP: "q", Pidfile: "p"}); err == nil {
		t.Error("persistent script without a disk accepted")
	}
}

func TestParseRejects(t *testing.T) {
	for name, text := range map[string]string{
		"empty":    "",
		"noexec":   "#!/bin/sh\necho hi\n",
		"nodollar": "#!/bin/sh\nexec /usr/bin/qemu-system-x86_64 -m 512\n",
		"notqemu":  "#!/bin/sh\nexec /bin/rm -rf / \"$@\"\n",
		"quote":    "#!/bin/sh\nexec /usr/bin/qemu-system-x86_64 -append \"oops \"$@\"\n",
		"twoexec":  "#!/bin/sh\nexec /usr/bin/qemu-system-x86_64 \"$@\"\nexec /usr/bin/qemu-system-x86_64 \"$@\"\n",
	} {
		if _, err := ParseRunVMText(text); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func parsedSample(t *testing.T) *RunVM {
	r, err := ParseRunVMText(realSample)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func valueOf(argv []string, opt string) []string {
	var out []string
	for i, a := range argv {
		if a == opt && i+1 < len(argv) {
			out = append(out, argv[i+1])
		}
	}
	return out
}

func TestArgvTCG(t *testing.T) {
	argv, err := Argv(Config{
		RunVM: parsedSample(t), KVM: false, MemoryMiB: 2048, CPUs: 2, SSHPort: 10023,
		Forwards: []Forward{{Proto: "tcp", Bind: "127.0.0.1", Host: 8080, Guest: 80}, {Proto: "udp", Bind: "0.0.0.0", Host: 5353, Guest: 53}},
		Shares:   []Share{{Path: "/home/me/my proj, v2", Tag: "share0"}, {Path: "/data", Tag: "share1", ReadOnly: true}},
		Marker:   "devvm-abc", QMP: "/run/devvm/abc/qmp.sock", Pidfile: "/co/.devvm/x/qemu.pid",
		ConsoleSocket: "/run/devvm/abc/console.sock", ConsoleLog: "/co,x/.devvm/x/console.log",
	})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(argv, "-enable-kvm") {
		t.Error("-enable-kvm kept without KVM")
	}
	if got := valueOf(argv, "-accel"); len(got) != 1 || got[0] != "tcg" {
		t.Errorf("-accel %v", got)
	}
	if got := valueOf(argv, "-m"); len(got) != 1 || got[0] != "2048" {
		t.Errorf("-m %v (the script's 512 must be replaced)", got)
	}
	if got := valueOf(argv, "-smp"); len(got) != 1 || got[0] != "2" {
		t.Errorf("-smp %v", got)
	}
	nic := valueOf(argv, "-nic")
	if len(nic) != 1 || nic[0] != "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:10023-:22,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp:0.0.0.0:5353-:53" {
		t.Errorf("-nic %v", nic)
	}
	vfs := valueOf(argv, "-virtfs")
	want := []string{
		"local,path=/gnu/store,security_model=none,mount_tag=TAGjoptajej2oynju6yvboauz7pl6uj",
		"local,path=/home/me/my proj,, v2,security_model=none,mount_tag=share0",
		"local,path=/data,security_model=none,mount_tag=share1,readonly=on",
	}
	if !slices.Equal(vfs, want) {
		t.Errorf("-virtfs %q\nwant %q", vfs, want)
	}
	if got := valueOf(argv, "-qmp"); len(got) != 1 || got[0] != "unix:/run/devvm/abc/qmp.sock,server=on,wait=off" {
		t.Errorf("-qmp %v", got)
	}
	if !slices.Contains(argv, "-daemonize") || valueOf(argv, "-name")[0] != "devvm-abc" || valueOf(argv, "-pidfile")[0] != "/co/.devvm/x/qemu.pid" {
		t.Errorf("detaching, marker or pidfile missing: %q", argv)
	}
	if ch := valueOf(argv, "-chardev"); len(ch) != 1 || !strings.Contains(ch[0], "logfile=/co,,x/.devvm/x/console.log") {
		t.Errorf("serial chardev %v", ch)
	}
	if i := slices.Index(argv, "-append"); argv[i+1] != parsedSample(t).Argv[6] {
		t.Error("the kernel command line was changed")
	}
}

func TestArgvKVMAndForeground(t *testing.T) {
	argv, err := Argv(Config{RunVM: parsedSample(t), KVM: true, MemoryMiB: 512, CPUs: 1, SSHPort: 10022,
		Marker: "m", QMP: "/q", Pidfile: "/p", ConsoleLog: "/l", Foreground: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(argv, "-enable-kvm") || slices.Contains(argv, "-daemonize") {
		t.Errorf("%q", argv)
	}
	if ch := valueOf(argv, "-chardev"); len(ch) != 1 || !strings.HasPrefix(ch[0], "stdio,") || !strings.Contains(ch[0], "signal=off") {
		t.Errorf("foreground console %v: Ctrl-C must reach the guest, not kill QEMU", ch)
	}
}

func TestArgvSocketLength(t *testing.T) {
	long := "/" + strings.Repeat("x", 120)
	if _, err := Argv(Config{RunVM: parsedSample(t), Marker: "m", QMP: long, Pidfile: "/p"}); err == nil || !strings.Contains(err.Error(), "107") {
		t.Errorf("long socket path: %v", err)
	}
}

func TestPickSSHPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().(*net.TCPAddr).Port
	p, err := PickSSHPort(busy, false)
	if err != nil || p == busy || p <= busy || p >= busy+PortRange {
		t.Errorf("unpinned busy port: got %d, %v", p, err)
	}
	_, err = PickSSHPort(busy, true)
	if err == nil || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) || !strings.Contains(err.Error(), "ssh.port") {
		t.Errorf("pinned busy port error: %v", err)
	}
}

func TestParseRunVMFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "run-vm.sh")
	os.WriteFile(p, []byte(realSample), 0o555)
	r, err := ParseRunVM(p)
	if err != nil || r.Path != p {
		t.Fatalf("%v %+v", err, r)
	}
	if _, err := ParseRunVM(p + ".gone"); err == nil || !strings.Contains(err.Error(), "--rebuild") {
		t.Errorf("missing script: %v", err)
	}
}
