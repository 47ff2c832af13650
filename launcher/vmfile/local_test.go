package vmfile

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// writeCheckout writes a Vmfile and, unless local is "", a Vmfile.local.
func writeCheckout(t *testing.T, vmfile, local string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(vmfile), 0o644); err != nil {
		t.Fatal(err)
	}
	if local != "" {
		if err := os.WriteFile(filepath.Join(dir, LocalFileName), []byte(local), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const sharedVmfile = `name = "qbuf"
memory = "2G"
persistent = true

[ssh]
user = "dev"
port = 10022

[[forward]]
host = 8080
guest = 80

[[forward]]
host = 5432
guest = 5432
`

func TestLocal(t *testing.T) {
	dir := writeCheckout(t, sharedVmfile, `# mine
memory = "8G"
cpus = 6
boot_timeout = "30m"

[ssh]
port = 2222
forward_agent = true

[guix]
build_timeout = "3h"

[[forward]]
host = 18080
guest = 80
`)
	v, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if v.Memory != 8*GiB || v.CPUs != 6 || v.BootTimeout.D() != 30*time.Minute || v.Guix.BuildTimeout.D() != 3*time.Hour {
		t.Errorf("memory %s cpus %d boot %v build %v", v.Memory, v.CPUs, v.BootTimeout.D(), v.Guix.BuildTimeout.D())
	}
	if v.SSH.Port != 2222 || !v.SSHPortPinned || !v.SSH.ForwardAgent || v.SSH.User != "dev" {
		t.Errorf("ssh = %+v pinned %v", v.SSH, v.SSHPortPinned)
	}
	// The Vmfile's values that Vmfile.local leaves alone stay.
	if v.Name != "qbuf" || !v.Persistent || v.Disk != DefaultDisk {
		t.Errorf("name %q persistent %v disk %s", v.Name, v.Persistent, v.Disk)
	}
	// [[forward]] replaces the whole list.
	if want := []Forward{{Host: 18080, Guest: 80, Bind: "127.0.0.1", Proto: "tcp"}}; !reflect.DeepEqual(v.Forwards, want) {
		t.Errorf("forwards = %+v, want %+v", v.Forwards, want)
	}
	wantLocal := []string{"memory", "cpus", "boot_timeout", "ssh.port", "ssh.forward_agent", "guix.build_timeout", "forward"}
	if !reflect.DeepEqual(v.Local, wantLocal) || !v.FromLocal("memory") || v.FromLocal("name") {
		t.Errorf("Local = %v", v.Local)
	}
	localPath := filepath.Join(dir, LocalFileName)
	if v.LocalPath != localPath {
		t.Errorf("LocalPath = %q", v.LocalPath)
	}
	// Errors found later point at the file that sets the key.
	if e := v.KeyError("ssh.port", "busy"); e.Error() != localPath+":7: ssh.port: busy" {
		t.Errorf("KeyError(ssh.port) = %q", e)
	}
	if e := v.KeyError("ssh.user", "x"); e.Path != filepath.Join(dir, FileName) || e.Line != 6 {
		t.Errorf("KeyError(ssh.user) = %q", e)
	}
	if e := v.KeyError("forward[0].host", "busy"); e.Path != localPath || e.Line != 14 {
		t.Errorf("KeyError(forward[0].host) = %q", e)
	}
	if e := v.KeyError("forward[1].host", "x"); e.Line != 0 {
		t.Errorf("the Vmfile's replaced forward[1] still has line %d", e.Line)
	}

	// Without Vmfile.local nothing is overridden.
	v, err = Load(writeCheckout(t, sharedVmfile, ""))
	if err != nil || v.LocalPath != "" || v.Local != nil || len(v.Forwards) != 2 {
		t.Errorf("no Vmfile.local: %+v, %v", v, err)
	}
	// forward = [] in Vmfile.local drops the Vmfile's forwards.
	v, err = Load(writeCheckout(t, sharedVmfile, "forward = []\n"))
	if err != nil || len(v.Forwards) != 0 {
		t.Errorf("forward = []: %+v, %v", v, err)
	}
}

func TestLocalErrors(t *testing.T) {
	for _, c := range []struct {
		name, local string
		file        string // FileName or LocalFileName
		key         string
		line        int
		msg         string
	}{
		{"build key", "\npersistent = false\n", LocalFileName, "persistent", 2, "cannot be set in Vmfile.local, which may set only memory, cpus"},
		{"share", "[[share]]\nguest = \"/mnt/x\"\n", LocalFileName, "share", 1, "keys that change the VM's build or shares belong in the Vmfile"},
		{"ssh user", "[ssh]\nuser = \"me\"\n", LocalFileName, "ssh.user", 2, "cannot be set in Vmfile.local"},
		{"guix config", "guix.config = \"x.scm\"\n", LocalFileName, "guix.config", 1, "cannot be set in Vmfile.local"},
		{"microvm", "[microvm]\n", LocalFileName, "microvm", 1, "cannot be set in Vmfile.local"},
		{"typo", "memroy = \"4G\"\n", LocalFileName, "memroy", 1, `did you mean "memory"`},
		{"case", "CPUs = 4\n", LocalFileName, "CPUs", 1, `case-sensitive; write "cpus"`},
		{"wrong type", "cpus = \"many\"\n", LocalFileName, "cpus", 1, "takes an integer"},
		{"syntax", "cpus = = 4\n", LocalFileName, "cpus", 1, "invalid TOML"},
		{"set twice", "cpus = 4\ncpus = 5\n", LocalFileName, "cpus", 2, "already set on line 1"},
		{"bad value", "\nmemory = \"1M\"\n", LocalFileName, "memory", 2, "too little"},
		{"privileged port", "[ssh]\nport = 443\n", LocalFileName, "ssh.port", 2, "below 1024"},
		{"forward missing guest", "[[forward]]\nhost = 9000\n", LocalFileName, "forward[0].guest", 1, "missing"},
		{"forward on the ssh port", "[[forward]]\nhost = 10022\nguest = 22\n", LocalFileName, "forward[0].host", 2, "already taken by ssh.port"},
		{"local port clashes with a forward of the Vmfile", "ssh.port = 8080\n", FileName, "forward[0].host", 10, "already taken by ssh.port"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writeCheckout(t, sharedVmfile, c.local)
			_, err := Load(dir)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Load: %v, want an *Error", err)
			}
			want := filepath.Join(dir, c.file)
			if e.Path != want || e.Key != c.key || e.Line != c.line || !strings.Contains(e.Msg, c.msg) {
				t.Errorf("error %q; want %s:%d: %s: …%s…", err, want, c.line, c.key, c.msg)
			}
		})
	}
}
