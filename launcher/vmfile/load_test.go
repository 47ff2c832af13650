package vmfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	// Tests run as root or not: they see the default of an ordinary user.
	unprivilegedPorts = func() int { return 1024 }
	os.Exit(m.Run())
}

func parseIn(t *testing.T, dir, text string) (*Vmfile, error) {
	t.Helper()
	return Parse(filepath.Join(dir, FileName), []byte(text))
}

// tree lists every path under dir with its mode and size.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		out = append(out, p+" "+info.Mode().String()+" "+info.ModTime().String())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func TestDefaults(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "My Project,v2")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	v, err := parseIn(t, dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if v.Name != "my-project-v2" {
		t.Errorf("Name = %q, want my-project-v2", v.Name)
	}
	if v.Backend != BackendGuix || v.Memory != 2*GiB || v.CPUs != 2 || v.Persistent {
		t.Errorf("backend/memory/cpus/persistent = %q %s %d %v", v.Backend, v.Memory, v.CPUs, v.Persistent)
	}
	if v.BootTimeout.D() != 10*time.Minute || v.Guix.BuildTimeout.D() != 60*time.Minute {
		t.Errorf("timeouts = %v %v", v.BootTimeout.D(), v.Guix.BuildTimeout.D())
	}
	if v.SSH.User != "dev" || v.SSH.Port != DefaultSSHPort || v.SSHPortPinned {
		t.Errorf("ssh = %+v pinned=%v", v.SSH, v.SSHPortPinned)
	}
	wantGuix := Guix{Command: "guix", Config: "dev-vm.scm", Channels: "channels.scm", BuildTimeout: Duration(time.Hour)}
	if !reflect.DeepEqual(v.Guix, wantGuix) {
		t.Errorf("guix = %+v, want %+v", v.Guix, wantGuix)
	}
	wantShares := []Share{{Host: ".", Guest: "/mnt/my-project-v2", Tag: "share0", Mode: ShareVirtio}}
	if !reflect.DeepEqual(v.Shares, wantShares) {
		t.Errorf("shares = %+v, want %+v", v.Shares, wantShares)
	}
	if len(v.Forwards) != 0 || v.MicroVM != nil {
		t.Errorf("forwards %v microvm %v, want none", v.Forwards, v.MicroVM)
	}
	if v.Dir != dir || v.Path != filepath.Join(dir, FileName) {
		t.Errorf("Dir, Path = %q, %q", v.Dir, v.Path)
	}
	if got := v.Resolve(v.Shares[0].Host); got != dir {
		t.Errorf("Resolve(.) = %q, want %q", got, dir)
	}

	// manifest.scm is used when it exists, unless manifest = "" says no.
	if err := os.WriteFile(filepath.Join(dir, "manifest.scm"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	v, err = parseIn(t, dir, "")
	if err != nil || v.Guix.Manifest != "manifest.scm" {
		t.Errorf("with manifest.scm: manifest %q, err %v", v.Guix.Manifest, err)
	}
	v, err = parseIn(t, dir, "[guix]\nmanifest = \"\"\n")
	if err != nil || v.Guix.Manifest != "" {
		t.Errorf("manifest = \"\": manifest %q, err %v", v.Guix.Manifest, err)
	}
}

func TestSanitizeName(t *testing.T) {
	for in, want := range map[string]string{
		"qbuf":                         "qbuf",
		"My Project":                   "my-project",
		"a,,b  c":                      "a-b-c",
		"--x--":                        "x",
		"_under_":                      "under",
		"Ünïcode":                      "n-code",
		"":                             "devvm",
		"/":                            "devvm",
		"...":                          "devvm",
		strings.Repeat("a", 70):        strings.Repeat("a", 63),
		strings.Repeat("a", 62) + " b": strings.Repeat("a", 62),
		"simple-microvm-infra":         "simple-microvm-infra",
		"proj.v2.1":                    "proj-v2-1",
	} {
		got := SanitizeName(in)
		if got != want {
			t.Errorf("SanitizeName(%q) = %q, want %q", in, got, want)
		}
		if !nameRe.MatchString(got) {
			t.Errorf("SanitizeName(%q) = %q is not a valid name", in, got)
		}
	}
}

func TestAccepted(t *testing.T) {
	dir := t.TempDir()
	odd := filepath.Join(dir, "data, with space")
	if err := os.Mkdir(odd, 0o755); err != nil {
		t.Fatal(err)
	}
	v, err := parseIn(t, dir, `name = "qbuf"
memory = 2048
cpus = 4
boot_timeout = "90s"
ssh = { port = 2222, authorized_keys = ["ssh-ed25519 AAAA x@y"] }

[[share]]
guest = "/mnt/qbuf"

[[share]]
host = "data, with space"
guest = "/srv/data_1+x@y"
tag = "data"
readonly = true
mode = "ssh"

[[forward]]
host = 8080
guest = 80

[[forward]]
host = 8080
guest = 53
proto = "udp"
bind = "0.0.0.0"
`)
	if err != nil {
		t.Fatal(err)
	}
	if v.Memory != 2*GiB || v.CPUs != 4 || v.BootTimeout.D() != 90*time.Second {
		t.Errorf("memory %s cpus %d boot_timeout %v", v.Memory, v.CPUs, v.BootTimeout.D())
	}
	if v.SSH.Port != 2222 || !v.SSHPortPinned {
		t.Errorf("ssh.port %d pinned %v, want 2222 pinned", v.SSH.Port, v.SSHPortPinned)
	}
	if got := v.Resolve(v.Shares[1].Host); got != odd {
		t.Errorf("share[1] resolves to %q, want %q", got, odd)
	}
	want := Share{Host: "data, with space", Guest: "/srv/data_1+x@y", Tag: "data", ReadOnly: true, Mode: ShareSSH}
	if v.Shares[1] != want {
		t.Errorf("share[1] = %+v, want %+v", v.Shares[1], want)
	}
	if v.Shares[0].Tag != "share0" || v.Shares[0].Host != "." {
		t.Errorf("share[0] = %+v", v.Shares[0])
	}
	wantF := []Forward{{Host: 8080, Guest: 80, Bind: "127.0.0.1", Proto: "tcp"}, {Host: 8080, Guest: 53, Bind: "0.0.0.0", Proto: "udp"}}
	if !reflect.DeepEqual(v.Forwards, wantF) {
		t.Errorf("forwards = %+v, want %+v", v.Forwards, wantF)
	}

	// No shares at all is allowed.
	v, err = parseIn(t, dir, "share = []\n")
	if err != nil || len(v.Shares) != 0 {
		t.Errorf("share = []: shares %v, err %v", v.Shares, err)
	}
}

func TestMicroVM(t *testing.T) {
	dir := t.TempDir()
	v, err := parseIn(t, dir, `backend = "microvm"
[ssh]
user = "alice"
[microvm]
[microvm.machines.vm1]
address = "10.1.0.2"
[microvm.machines.vm2]
address = "vm2.tailnet.ts.net"
config = "big-vm"
user = "root"
port = 2222
routed = true
[microvm.remote]
destination = "root@hypervisor"
checkout = "/root/simple-microvm-infra"
`)
	if err != nil {
		t.Fatal(err)
	}
	m := v.MicroVM
	if m.Flake != "." || m.Remote.Sync != "git-pull" || m.Remote.Destination != "root@hypervisor" {
		t.Errorf("microvm = %+v remote %+v", m, m.Remote)
	}
	want := map[string]Machine{
		"vm1": {Config: "vm1", Address: "10.1.0.2", User: "alice", Port: 22},
		"vm2": {Config: "big-vm", Address: "vm2.tailnet.ts.net", User: "root", Port: 2222, Routed: true},
	}
	if !reflect.DeepEqual(m.Machines, want) {
		t.Errorf("machines = %+v, want %+v", m.Machines, want)
	}
	if v.Shares[0].Mode != ShareSSH {
		t.Errorf("share mode with a remote = %q, want ssh", v.Shares[0].Mode)
	}

	// A local microvm: shares stay virtio.
	v, err = parseIn(t, dir, "backend = \"microvm\"\n[microvm.machines.vm1]\naddress = \"127.0.0.1\"\nport = 2222\n")
	if err != nil {
		t.Fatal(err)
	}
	if v.Shares[0].Mode != ShareVirtio {
		t.Errorf("local microvm share mode = %q, want virtio", v.Shares[0].Mode)
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, text string
		key        string
		line       int
		msg        string
	}{
		{"syntax", "cpus = 2\nname = = \"x\"\n", "name", 2, "invalid TOML: unexpected character U+003D '=' at start of value"},
		{"unterminated string", "name = \"x\ncpus = 2\n", "name", 1, "invalid TOML: basic strings cannot have new lines"},
		{"duplicate key", "cpus = 1\ncpus = 2\n", "cpus", 2, "invalid TOML: already set on line 1; TOML defines each key and table once"},
		{"unknown top-level key", "name = \"x\"\nmemroy = \"2G\"\n", "memroy", 2, `did you mean "memory"`},
		{"unknown key far off", "colour = 1\n", "colour", 1, "devvm reads only name, backend"},
		{"Memory case variant", "\nMemory = \"2G\"\n", "Memory", 2, `case-sensitive; write "memory"`},
		{"SSH table case variant", "[SSH]\nport = 2\n", "SSH", 1, `write "ssh"`},
		{"quoted case variant", "[\"ssh\"]\nPort = 2\n", "ssh.Port", 2, `write "port"`},
		{"unknown key in second share", "[[share]]\nguest = \"/mnt/a\"\n\n[[share]]\nguset = \"/mnt/b\"\n", "share[1].guset", 5, `did you mean "guest"`},
		{"unknown key in inline share", "share = [{guest = \"/mnt/a\"},\n  {guest = \"/mnt/b\", rw = true}]\n", "share[1].rw", 2, "unknown key"},
		{"unknown table", "[microvm.remote.extra]\nx = 1\n", "microvm.remote.extra", 1, "unknown key"},
		{"size in words", "name = \"x\"\nmemory = \"2 gigs\"\n", "memory", 2, `invalid size "2 gigs"`},
		{"size not a number", "memory = \"1.2.3G\"\n", "memory", 1, "not a number"},
		{"size too small", "memory = \"64M\"\n", "memory", 1, "too little"},
		{"size zero", "memory = 0\n", "memory", 1, "must be positive"},
		{"duration without unit", "boot_timeout = 5\n", "boot_timeout", 1, "give a unit"},
		{"duration in words", "[guix]\nbuild_timeout = \"5 minutes\"\n", "guix.build_timeout", 2, "invalid duration"},
		{"cpus as word", "name = \"x\"\n\ncpus = \"two\"\n", "cpus", 3, "the value is a string, but this key takes an integer"},
		{"cpus float", "cpus = 2.5\n", "cpus", 1, "a float"},
		{"cpus zero", "cpus = 0\n", "cpus", 1, "out of range"},
		{"share not a table", "share = \"x\"\n", "share", 1, "wrong type"},
		{"guest not a string in second share", "[[share]]\nguest = \"/mnt/a\"\n[[share]]\nguest = 5\n", "share[1].guest", 4, "this key takes a string"},
		{"machines not a table", "[microvm]\nmachines = 5\n", "microvm.machines", 2, "the value is an integer, but this key takes a table"},
		{"microvm not a table", "microvm = 1\n", "microvm", 1, "takes a table"},
		{"port 0", "[ssh]\nport = 0\n", "ssh.port", 2, "out of range"},
		{"port 65536", "[ssh]\nuser = \"dev\"\nport = 65536\n", "ssh.port", 3, "out of range"},
		{"port inline", "ssh = { port = 70000 }\n", "ssh.port", 1, "out of range"},
		{"port dotted", "ssh.port = -1\n", "ssh.port", 1, "out of range"},
		{"bad name", "name = \"Qbuf\"\n", "name", 1, "not a valid VM name"},
		{"bad backend", "backend = \"docker\"\n", "backend", 1, "not a backend"},
		{"bad user", "[ssh]\nuser = \"Root Admin\"\n", "ssh.user", 2, "not a valid user name"},
		{"guest with space", "[[share]]\nguest = \"/mnt/my dir\"\n", "share[0].guest", 2, "contains a space"},
		{"guest with comma", "[[share]]\nguest = \"/mnt/a,b\"\n", "share[0].guest", 2, "contains a comma"},
		{"guest with double quote", "[[share]]\nguest = \"/mnt/a\\\"b\"\n", "share[0].guest", 2, "contains a quote"},
		{"guest with quotes in a literal string", "[[share]]\nguest = '/mnt/\"x\"'\n", "share[0].guest", 2, "contains a quote"},
		{"guest with single quote", "[[share]]\nguest = \"/mnt/it's\"\n", "share[0].guest", 2, "contains a quote"},
		{"guest relative", "[[share]]\nguest = \"mnt/x\"\n", "share[0].guest", 2, "not an absolute path"},
		{"guest unclean", "[[share]]\nguest = \"/mnt/x/\"\n", "share[0].guest", 2, "not a clean path"},
		{"guest root", "[[share]]\nguest = \"/\"\n", "share[0].guest", 2, "root"},
		{"guest in store", "[[share]]\nguest = \"/gnu/store/x\"\n", "share[0].guest", 2, "inside /gnu"},
		{"guest etc", "[[share]]\nguest = \"/etc\"\n", "share[0].guest", 2, "system directory"},
		{"second share without guest", "[[share]]\n[[share]]\nhost = \".\"\ntag = \"b\"\n", "share[1].guest", 2, "missing"},
		{"duplicate guest", "[[share]]\nguest = \"/mnt/a\"\n[[share]]\ntag = \"b\"\nguest = \"/mnt/a\"\n", "share[1].guest", 5, "already the mount point of share[0]"},
		{"duplicate tag", "[[share]]\nguest = \"/mnt/a\"\ntag = \"t\"\n[[share]]\nguest = \"/mnt/b\"\ntag = \"t\"\n", "share[1].tag", 6, "already the tag of share[0]"},
		{"default tag taken", "[[share]]\nguest = \"/mnt/a\"\ntag = \"share1\"\n[[share]]\nguest = \"/mnt/b\"\n", "share[1].tag", 0, "already the tag"},
		{"bad tag", "[[share]]\ntag = \"a b\"\n", "share[0].tag", 2, "not a valid 9p mount tag"},
		{"long tag", "[[share]]\ntag = \"" + strings.Repeat("t", 32) + "\"\n", "share[0].tag", 2, "at most 31"},
		{"bad mode", "[[share]]\nmode = \"nfs\"\n", "share[0].mode", 2, "not a share mode"},
		{"missing host dir", "[[share]]\nhost = \"nope\"\n", "share[0].host", 2, "no such file or directory"},
		{"host is a file", "[[share]]\nhost = \"file\"\n", "share[0].host", 2, "not a directory"},
		{"forward port 0", "[[forward]]\nhost = 0\nguest = 80\n", "forward[0].host", 2, "out of range"},
		{"forward port 65536", "[[forward]]\nhost = 8080\nguest = 65536\n", "forward[0].guest", 3, "out of range"},
		{"forward guest missing", "\n[[forward]]\nhost = 8080\n", "forward[0].guest", 2, "missing"},
		{"forward duplicate host", "[[forward]]\nhost = 8080\nguest = 80\n[[forward]]\nhost = 8080\nguest = 81\n", "forward[1].host", 5, "already taken by forward[0].host"},
		{"forward on ssh port", "[[forward]]\nhost = 10022\nguest = 22\n", "forward[0].host", 2, "already taken by ssh.port"},
		{"forward ipv6 bind", "[[forward]]\nhost = 5001\nguest = 2\nbind = \"::1\"\n", "forward[0].bind", 4, "not an IPv4 address"},
		{"forward proto", "forward = [{host = 5001, guest = 2, proto = \"sctp\"}]\n", "forward[0].proto", 1, "not a protocol"},
		{"microvm without machines", "\nbackend = \"microvm\"\n", "microvm.machines", 2, "at least one"},
		{"machine without address", "backend = \"microvm\"\n[microvm.machines.vm1]\nuser = \"root\"\n", "microvm.machines.vm1.address", 2, "missing"},
		{"machine port 0", "backend = \"microvm\"\n[microvm.machines.vm1]\naddress = \"10.1.0.2\"\nport = 0\n", "microvm.machines.vm1.port", 4, "out of range"},
		{"machine bad name", "backend = \"microvm\"\n[microvm.machines.\"a.b\"]\naddress = \"10.1.0.2\"\n", `microvm.machines."a.b"`, 2, "not a valid machine name"},
		{"machine bad address", "[microvm.machines.vm1]\naddress = \"10.1.0.2; rm -rf /\"\n", "microvm.machines.vm1.address", 2, "neither an IP address nor a host name"},
		{"machine unknown key", "[microvm.machines.vm1]\naddress = \"x\"\nAddress = \"y\"\n", "microvm.machines.vm1.Address", 3, "case-sensitive"},
		{"remote without checkout", "backend = \"microvm\"\n[microvm.machines.vm1]\naddress = \"10.1.0.2\"\n[microvm.remote]\ndestination = \"root@h\"\n", "microvm.remote.checkout", 4, "missing"},
		{"remote destination option", "[microvm.remote]\ndestination = \"-oProxyCommand=x\"\ncheckout = \"/r\"\n", "microvm.remote.destination", 2, "not user@host"},
		{"remote relative checkout", "[microvm.remote]\ndestination = \"h\"\ncheckout = \"r\"\n", "microvm.remote.checkout", 3, "absolute"},
		{"remote sync", "[microvm.remote]\ndestination = \"h\"\ncheckout = \"/r\"\nsync = \"rsync\"\n", "microvm.remote.sync", 4, "git-pull"},
		{"multiline string hides keys", "[guix]\ncommand = \"\"\"\\\n[[share]]\\\nguest = \"/bad path\" \\\n\"\"\"\n[[share]]\nguest = \"/mnt/bad dir\"\n", "share[0].guest", 7, "contains a space"},
		{"literal strings hide keys", "[guix]\nconfig = '''a'b''c[[share]]'''\nchannels = 'x # [[share]]'\n[[share]]\nguest = '/mnt/bad dir'\n", "share[0].guest", 5, "contains a space"},
		{"syntax error in a table", "[ssh]\nuser = \"dev\"\n\n# c\nport = 22 x\n", "ssh.port", 5, "invalid TOML: expected newline"},
		{"syntax error in a header", "[ssh\nport = 1\n", "", 1, "invalid TOML: expected ']'"},
		{"syntax error across lines", "[guix]\nload_path = [\"a\",\n  \"b\" \"c\"]\n", "guix.load_path", 3, "expected ',' or ']'"},
		{"unquoted size", "memory = 2G\n", "memory", 1, "strings must be quoted"},
		{"integer too big", "cpus = 99999999999999999999\n", "cpus", 1, "does not fit in a 64-bit integer"},
		{"hex integer", "cpus = 0x1_0\n[ssh]\nport = 0o7\n", "ssh.port", 3, "port 7 is below 1024"},
		{"nested too deep", "x = " + strings.Repeat("[", 20000) + "\n", "x", 1, "nested more than the maximum of 10000"},
		{"table defined twice", "[ssh]\nuser = \"a\"\n[ssh]\n", "ssh", 3, "already a table, opened by the [header] on line 1"},
		{"header after dotted key", "ssh.port = 2222\n[ssh]\n", "ssh", 2, "made by the dotted key on line 1"},
		{"dotted key into a header table", "[microvm.remote]\ndestination = \"h\"\n[microvm]\nremote.checkout = \"/r\"\n", "microvm.remote", 4, "opened by the [header] on line 1"},
		{"inline table extended", "ssh = { port = 2222 }\nssh.user = \"x\"\n", "ssh", 2, "already set on line 1"},
		{"inline table reopened", "ssh = { port = 2222 }\n[ssh]\n", "ssh", 2, "already set on line 1"},
		{"duplicate key in an inline table", "ssh = { port = 2222, port = 2223 }\n", "ssh.port", 1, "already set on line 1"},
		{"array of tables after an array", "share = []\n[[share]]\n", "share", 2, "already set on line 1"},
		{"array of tables reopened as a table", "[[share]]\n[share]\n", "share", 2, "already an array of tables"},
		{"table as array of tables", "[[ssh]]\n", "ssh", 1, "the value is an array of tables, but this key takes a table"},
		{"share as a table", "[share]\n", "share", 1, "the value is a table, but this key takes tables ([[name]] blocks)"},
		{"share by dotted key", "share.guest = \"/mnt/x\"\n", "share", 1, "the value is a table, but this key takes tables"},
		{"key under a value", "cpus.x = 1\n", "cpus", 1, "the value is a table, but this key takes an integer"},
		{"share element not a table", "share = [\"/mnt/x\"]\n", "share[0]", 1, "the value is a string, but this key takes a table"},
		{"authorized_keys nested", "[ssh]\nauthorized_keys = [\"k\", [\"x\"]]\n", "ssh.authorized_keys[1]", 2, "the value is an array, but this key takes a string"},
		{"size as a boolean", "memory = true\n", "memory", 1, "the value is a boolean, but this key takes a size"},
		{"date", "boot_timeout = 1979-05-27\n", "boot_timeout", 1, "the value is a date/time"},
		{"guest in the user's home", "[ssh]\nuser = \"alice\"\n[[share]]\nguest = \"/home/alice/src\"\n", "share[0].guest", 4, "the home of ssh.user \"alice\": Guix mounts shares before it creates home directories"},
		{"guest is the user's home", "[[share]]\nguest = \"/home/dev\"\n", "share[0].guest", 2, "mount the share at /mnt/dev or /srv/dev"},
		{"privileged ssh port", "[ssh]\nport = 22\n", "ssh.port", 2, "port 22 is below 1024, and binding it needs root"},
		{"privileged forward", "[[forward]]\nhost = 80\nguest = 80\n", "forward[0].host", 2, "below 1024, and binding it needs root (QEMU runs as you): pick a host port from 1024 up (e.g. 8080); the guest port can stay 80"},
		{"disk without persistent", "disk = \"40G\"\n", "disk", 1, "set persistent = true, or remove disk"},
		{"disk too small", "persistent = true\ndisk = \"1G\"\n", "disk", 2, "at least \"2G\""},
		{"disk in words", "persistent = true\ndisk = \"big\"\n", "disk", 2, "invalid size"},
		{"load_path not a list", "[guix]\nload_path = \".guix\"\n", "guix.load_path", 2, "this key takes an array of strings"},
		{"load_path empty entry", "[guix]\nload_path = [\"a\", \"\"]\n", "guix.load_path[1]", 2, "not a directory name"},
		{"disable_authentication as a string", "[guix]\ndisable_authentication = \"yes\"\n", "guix.disable_authentication", 2, "this key takes true or false"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := tree(t, dir)
			v, err := parseIn(t, dir, c.text)
			if err == nil {
				t.Fatalf("no error; parsed %+v", v)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is a %T, want *Error", err, err)
			}
			if e.Key != c.key || e.Line != c.line {
				t.Errorf("key, line = %q, %d; want %q, %d (%v)", e.Key, e.Line, c.key, c.line, err)
			}
			if !strings.Contains(e.Msg, c.msg) {
				t.Errorf("message %q does not contain %q", e.Msg, c.msg)
			}
			if strings.Contains(e.Msg, "/home/<") {
				t.Errorf("message %q suggests a share under /home", e.Msg)
			}
			if e.Path != filepath.Join(dir, FileName) || !strings.HasPrefix(err.Error(), e.Path) {
				t.Errorf("error %q does not start with the Vmfile's path", err)
			}
			if after := tree(t, dir); !reflect.DeepEqual(before, after) {
				t.Errorf("Parse changed the directory:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	for _, c := range []struct {
		e    Error
		want string
	}{
		{Error{Path: "/p/Vmfile", Line: 3, Key: "ssh.port", Msg: "busy"}, "/p/Vmfile:3: ssh.port: busy"},
		{Error{Path: "/p/Vmfile", Key: "share[0].host", Msg: "gone"}, "/p/Vmfile: share[0].host: gone"},
		{Error{Path: "/p/Vmfile", Line: 1, Msg: "invalid TOML: x"}, "/p/Vmfile:1: invalid TOML: x"},
	} {
		if got := c.e.Error(); got != c.want {
			t.Errorf("Error() = %q, want %q", got, c.want)
		}
	}
}

func TestKeyError(t *testing.T) {
	dir := t.TempDir()
	v, err := parseIn(t, dir, "name = \"x\"\n\n[ssh]\nport = 2222\n\n[[forward]]\nhost = 8080\nguest = 80\n")
	if err != nil {
		t.Fatal(err)
	}
	e := v.KeyError("ssh.port", "127.0.0.1:%d is in use", 2222)
	if e.Line != 4 || e.Error() != filepath.Join(dir, FileName)+":4: ssh.port: 127.0.0.1:2222 is in use" {
		t.Errorf("KeyError = %q (line %d)", e, e.Line)
	}
	if e := v.KeyError("forward[0].host", "busy"); e.Line != 7 {
		t.Errorf("forward[0].host line %d, want 7", e.Line)
	}
	if e := v.KeyError("cpus", "x"); e.Line != 0 {
		t.Errorf("unset key cpus has line %d, want 0", e.Line)
	}
	if e := Default(dir).KeyError("ssh.port", "x"); e.Line != 0 || e.Key != "ssh.port" {
		t.Errorf("Default KeyError = %+v", e)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	_, err := Load(dir)
	if err == nil || !strings.Contains(err.Error(), "devvm init") {
		t.Errorf("Load without a Vmfile: %v, want a hint to run devvm init", err)
	}
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte("name = \"x\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	v, err := Load(dir)
	if err != nil || v.Name != "x" {
		t.Fatalf("Load: %+v, %v", v, err)
	}
}

// stripPrivate clears what Parse keeps for KeyError.
func stripPrivate(v *Vmfile) *Vmfile {
	c := *v
	c.index = nil
	return &c
}

func TestTemplate(t *testing.T) {
	dir := t.TempDir()
	text := Template("qbuf")
	for _, want := range []string{"name = \"qbuf\"\n", "guest = \"/mnt/qbuf\"\n", "# port = 10022\n", "# memory = \"2G\"\n", "# boot_timeout = \"10m\"\n"} {
		if !strings.Contains(string(text), want) {
			t.Errorf("template lacks %q", want)
		}
	}
	v, err := parseIn(t, dir, string(text))
	if err != nil {
		t.Fatal(err)
	}
	def := Default(dir)
	def.Name = "qbuf"
	def.Shares[0].Guest = "/mnt/qbuf"
	if got := stripPrivate(v); !reflect.DeepEqual(got, def) {
		t.Errorf("Template parses to\n%+v\nwant the defaults\n%+v", got, def)
	}
	if v.SSH.Port != 10022 || v.SSHPortPinned {
		t.Errorf("template ssh port %d pinned %v, want 10022 unpinned", v.SSH.Port, v.SSHPortPinned)
	}

	// Every commented "# key = value" line is the default: uncommenting the
	// top part (up to the examples of more shares) changes nothing.
	var b strings.Builder
	assign := regexp.MustCompile(`^# ([a-z_]+ = .*)$`)
	for _, l := range strings.Split(string(text), "\n") {
		if strings.HasPrefix(l, "# More shares") {
			break
		}
		// Examples, not defaults: authorized_keys, manifest, load_path;
		// disk only goes with persistent = true.
		if m := assign.FindStringSubmatch(l); m != nil && !regexp.MustCompile(`^(authorized_keys|manifest|load_path|disk) `).MatchString(m[1]) {
			l = m[1]
		}
		b.WriteString(l + "\n")
	}
	v2, err := parseIn(t, dir, b.String())
	if err != nil {
		t.Fatalf("uncommented template: %v\n%s", err, b.String())
	}
	v2.SSHPortPinned = false
	if got := stripPrivate(v2); !reflect.DeepEqual(got, def) {
		t.Errorf("uncommented template parses to\n%+v\nwant\n%+v", got, def)
	}

	// Odd names are quoted, and still round-trip.
	if v, err := parseIn(t, dir, string(Template(`we"ird`))); err == nil || v != nil {
		t.Errorf("invalid name accepted")
	} else if e := new(Error); !errors.As(err, &e) || e.Key != "name" {
		t.Errorf("invalid name: %v", err)
	}
}

func TestExample(t *testing.T) {
	data, err := os.ReadFile("../../Vmfile.example")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	v, err := parseIn(t, dir, string(data))
	if err != nil {
		t.Fatal(err)
	}
	if v.Name != "qbuf" || v.Backend != BackendGuix || v.Memory != 4*GiB || v.CPUs != 4 {
		t.Errorf("name %q backend %q memory %s cpus %d", v.Name, v.Backend, v.Memory, v.CPUs)
	}
	if v.SSH.Port != 10022 || !v.SSHPortPinned {
		t.Errorf("ssh port %d pinned %v", v.SSH.Port, v.SSHPortPinned)
	}
	if len(v.Shares) != 1 || v.Shares[0].Guest != "/mnt/qbuf" || v.Shares[0].Host != "." {
		t.Errorf("shares = %+v", v.Shares)
	}
	if len(v.Forwards) != 1 || v.Forwards[0] != (Forward{Host: 8080, Guest: 80, Bind: "127.0.0.1", Proto: "tcp"}) {
		t.Errorf("forwards = %+v", v.Forwards)
	}
	g := v.Guix
	if g.Config != "dev-vm.scm" || g.Channels != "channels.scm" || g.Manifest != "manifest.scm" {
		t.Errorf("guix = %+v", g)
	}
	if v.MicroVM != nil {
		t.Errorf("the microvm part must stay commented out")
	}

	// The commented microvm part is valid once uncommented.
	text := string(data)
	i := strings.Index(text, "# [microvm]")
	if i < 0 {
		t.Fatal("no commented [microvm] table in Vmfile.example")
	}
	var b strings.Builder
	b.WriteString(strings.Replace(text[:i], "backend = \"guix\"", "backend = \"microvm\"", 1))
	for _, l := range strings.Split(text[i:], "\n") {
		b.WriteString(strings.TrimPrefix(strings.TrimPrefix(l, "#"), " ") + "\n")
	}
	v, err = parseIn(t, dir, b.String())
	if err != nil {
		t.Fatalf("uncommented microvm part: %v", err)
	}
	m := v.MicroVM
	if m == nil || m.Machines["vm1"].Address != "10.1.0.2" || m.Remote.Destination != "root@hypervisor" ||
		m.Remote.Checkout != "/root/simple-microvm-infra" || m.Remote.Sync != "git-pull" || m.Flake != "." {
		t.Errorf("microvm = %+v", m)
	}
}

func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Size
		err  string
	}{
		{"2G", 2 * GiB, ""},
		{"512M", 512 * MiB, ""},
		{"1.5GiB", 1536 * MiB, ""},
		{"2048", 2 * GiB, ""},
		{" 4 gb ", 4 * GiB, ""},
		{"1T", TiB, ""},
		{"2 gigs", 0, "with a unit"},
		{"", 0, "with a unit"},
		{"-1G", 0, "with a unit"},
		{"1.2.3G", 0, "not a number"},
		{"0", 0, "positive"},
		{"65T", 0, "larger than 64T"},
	} {
		got, err := ParseSize(c.in)
		if c.err == "" && (err != nil || got != c.want) {
			t.Errorf("ParseSize(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
		if c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("ParseSize(%q) error %v, want one containing %q", c.in, err, c.err)
		}
	}
	for s, want := range map[Size]string{2 * GiB: "2G", 1536 * MiB: "1536M", KiB + 1: "1025B", TiB: "1T"} {
		if s.String() != want {
			t.Errorf("Size(%d).String() = %q, want %q", uint64(s), s.String(), want)
		}
	}
	if (1536*MiB + 1).MiB() != 1537 {
		t.Errorf("MiB rounds down")
	}
}

func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	text := "[ssh]\nauthorized_keys = [\"ssh-ed25519 AAAAC3Nza me@host\", \"keys/me.pub\"]\n[guix]\nmanifest = \"manifest.scm\"\n"
	v, err := parseIn(t, dir, text)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct{ key, create string }{
		{"guix.config", "dev-vm.scm"},
		{"guix.channels", "channels.scm"},
		{"guix.manifest", "manifest.scm"},
		{"ssh.authorized_keys[1]", "keys/me.pub"},
	}
	for _, s := range steps {
		err := v.CheckFiles()
		var e *Error
		if !errors.As(err, &e) || e.Key != s.key || !strings.Contains(e.Msg, "does not exist") {
			t.Fatalf("CheckFiles = %v, want %s missing", err, s.key)
		}
		if s.key == "guix.manifest" && e.Line != 4 {
			t.Errorf("guix.manifest line %d, want 4", e.Line)
		}
		p := filepath.Join(dir, s.create)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.CheckFiles(); err != nil {
		t.Errorf("all files present: %v", err)
	}
	v.Backend = BackendMicroVM
	v.Guix.Config = "gone.scm"
	if err := v.CheckFiles(); err != nil {
		t.Errorf("microvm backend checks guix files: %v", err)
	}
}

func TestGuixKeysAndDisk(t *testing.T) {
	dir := t.TempDir()
	v, err := parseIn(t, dir, "persistent = true\n[guix]\nload_path = [\".guix/modules\", \"/opt/guile\"]\ndisable_authentication = true\n")
	if err != nil {
		t.Fatal(err)
	}
	if v.Disk != DefaultDisk || v.Disk.Bytes() != 20<<30 || v.Disk.String() != "20G" {
		t.Errorf("default disk = %s (%d bytes)", v.Disk, v.Disk.Bytes())
	}
	if !reflect.DeepEqual(v.Guix.LoadPath, []string{".guix/modules", "/opt/guile"}) || !v.Guix.DisableAuthentication {
		t.Errorf("guix = %+v", v.Guix)
	}
	if got := v.Resolve(v.Guix.LoadPath[0]); got != filepath.Join(dir, ".guix/modules") {
		t.Errorf("Resolve(load_path[0]) = %q", got)
	}
	for text, want := range map[string]Size{
		"persistent = true\ndisk = \"40GiB\"\n": 40 * GiB,
		"persistent = true\ndisk = 4096\n":      4 * GiB,
		"disk = \"2G\"\npersistent = true\n":    2 * GiB,
		"persistent = false\n":                  0,
	} {
		v, err := parseIn(t, dir, text)
		if err != nil || v.Disk != want {
			t.Errorf("%q: disk %s, %v; want %s", text, v.Disk, err, want)
		}
	}

	// The load path must exist as directories before a build.
	for _, f := range []string{"dev-vm.scm", "channels.scm"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	v, err = parseIn(t, dir, "[guix]\nload_path = [\n  \".guix/modules\",\n]\n")
	if err != nil {
		t.Fatal(err)
	}
	var e *Error
	if err := v.CheckFiles(); !errors.As(err, &e) || e.Key != "guix.load_path[0]" || e.Line != 3 || !strings.Contains(e.Msg, "does not exist") {
		t.Errorf("CheckFiles without .guix/modules: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, ".guix"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".guix/modules"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := v.CheckFiles(); !errors.As(err, &e) || !strings.Contains(e.Msg, "is not a directory") {
		t.Errorf("CheckFiles with .guix/modules a file: %v", err)
	}
	os.Remove(filepath.Join(dir, ".guix/modules"))
	if err := os.Mkdir(filepath.Join(dir, ".guix/modules"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := v.CheckFiles(); err != nil {
		t.Errorf("CheckFiles: %v", err)
	}
}

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"qbuf", "a", "my-project_2", strings.Repeat("a", 63)} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("ValidateName(%q) = %v", ok, err)
		}
	}
	for name, suggest := range map[string]string{"Bad Name!": "bad-name", "": "devvm", "-x": "x", strings.Repeat("a", 64): strings.Repeat("a", 63), "a.b": "a-b"} {
		err := ValidateName(name)
		if err == nil || !strings.Contains(err.Error(), "is not a valid VM name") || !strings.HasSuffix(err.Error(), "e.g. \""+suggest+"\"") {
			t.Errorf("ValidateName(%q) = %v, want a suggestion of %q", name, err, suggest)
		}
	}
}

// Root (or a lowered net.ipv4.ip_unprivileged_port_start) may bind low
// ports.
func TestPrivilegedPortsAllowed(t *testing.T) {
	defer func(f func() int) { unprivilegedPorts = f }(unprivilegedPorts)
	unprivilegedPorts = func() int { return 0 }
	v, err := parseIn(t, t.TempDir(), "[ssh]\nport = 22\n[[forward]]\nhost = 80\nguest = 80\n")
	if err != nil || v.SSH.Port != 22 || v.Forwards[0].Host != 80 {
		t.Errorf("as root: %+v, %v", v, err)
	}
	unprivilegedPorts = func() int { return 80 }
	if _, err := parseIn(t, t.TempDir(), "[[forward]]\nhost = 80\nguest = 80\n"); err != nil {
		t.Errorf("with ip_unprivileged_port_start = 80: %v", err)
	}
	if _, err := parseIn(t, t.TempDir(), "[[forward]]\nhost = 79\nguest = 80\n"); err == nil || !strings.Contains(err.Error(), "below 80") {
		t.Errorf("port 79 with ip_unprivileged_port_start = 80: %v", err)
	}
}
