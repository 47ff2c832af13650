package microvm

import (
	"strings"
	"testing"

	"github.com/devvm/devvm/launcher/backend"
)

func TestParseDest(t *testing.T) {
	for _, c := range []struct {
		in   string
		want dest
	}{
		{"root@35.92.20.130", dest{"root", "35.92.20.130", 22}},
		{"root@hv:2222", dest{"root", "hv", 2222}},
		{"admin@[::1]:2200", dest{"admin", "::1", 2200}},
		{"admin@[fe80::1]", dest{"admin", "fe80::1", 22}},
	} {
		got, err := parseDest(c.in)
		if err != nil || got != c.want {
			t.Errorf("parseDest(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	if d, err := parseDest("hv"); err != nil || d.User == "" || d.Port != 22 {
		t.Errorf("parseDest(hv) = %+v, %v: want the local user", d, err)
	}
	for _, bad := range []string{"root@hv:0", "root@hv:x", "root@[::1", "root@", "root@[::1]x"} {
		if _, err := parseDest(bad); err == nil {
			t.Errorf("parseDest(%q) accepted", bad)
		}
	}
	if s := (dest{"root", "hv", 2222}).String(); s != "ssh://root@hv:2222" {
		t.Errorf("String = %q", s)
	}
}

func TestParseInfoAndClassify(t *testing.T) {
	out := "vm1\tactive\tyes\t/nix/store/a-microvm-qemu-vm1\t/nix/store/a-microvm-qemu-vm1\t\t\t\t\n" +
		"vm2\tactive\tyes\t/nix/store/b2-microvm-qemu-vm2\t/nix/store/b1-microvm-qemu-vm2\t/nix/store/b1-microvm-qemu-vm2\t\t\t\n" +
		"vm3\tinactive\tyes\t/nix/store/c\t\t\t\t\t\n" +
		"vm4\tfailed\tyes\t/nix/store/d\t\t\t\t\t\n" +
		"vm5\tinactive\t\t\t\t\t\t\t\n" +
		"vm6\tinactive\tyes\t\t\t\t\t\t\n" +
		"vm7\tactivating\tyes\t/nix/store/e\t/nix/store/e\t\t\t\t\n"
	m, err := parseInfo(out)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"vm1": backend.Running, "vm2": backend.Outdated, "vm3": backend.Stopped, "vm4": backend.Failed,
		"vm5": backend.Stopped, "vm6": backend.Stopped, "vm7": backend.Starting}
	for name, st := range want {
		s := classify(m[name], name)
		if s.State != st {
			t.Errorf("%s: state %q, want %q (%+v)", name, s.State, st, s)
		}
		if s.Outdated != (name == "vm2") {
			t.Errorf("%s: outdated %v", name, s.Outdated)
		}
	}
	if s := classify(m["vm5"], "vm5"); !strings.Contains(s.Reason, "not created") {
		t.Errorf("vm5 reason %q", s.Reason)
	}
	if s := classify(m["vm6"], "vm6"); !strings.Contains(s.Reason, "skip") {
		t.Errorf("vm6 reason %q", s.Reason)
	}
	if m["vm2"].Old != "/nix/store/b1-microvm-qemu-vm2" || classify(m["vm1"], "vm1").BuildKey != "a-microvm-qemu-vm1" {
		t.Errorf("fields: %+v", m["vm2"])
	}
	if _, err := parseInfo("vm1\tactive\n"); err == nil {
		t.Error("a short line was accepted")
	}
}

func TestInfoScriptQuotes(t *testing.T) {
	s := infoScript("/var/lib/my microvms", []string{"vm1", "vm2"})
	if !strings.HasPrefix(s, "for vm in vm1 vm2; do") || !strings.Contains(s, `'/var/lib/my microvms'/"$vm"/current`) {
		t.Errorf("script: %s", s)
	}
}

func TestSSHForward(t *testing.T) {
	js := `[{"from":"host","proto":"tcp","host":{"address":"","port":2222},"guest":{"address":"","port":22}},
	        {"from":"host","proto":"tcp","host":{"address":"127.0.0.1","port":8080},"guest":{"address":"","port":80}}]`
	bind, port, err := sshForward([]byte(js), 22)
	if err != nil || bind != "127.0.0.1" || port != 2222 {
		t.Errorf("sshForward = %s %d %v", bind, port, err)
	}
	if _, _, err := sshForward([]byte(js), 2022); err == nil || !strings.Contains(err.Error(), "guest.port = 2022") {
		t.Errorf("missing forward: %v", err)
	}
	if _, _, err := sshForward([]byte(`[{"from":"guest","host":{"port":22},"guest":{"port":22}}]`), 22); err == nil {
		t.Error("a guest forward was taken for SSH")
	}
	if _, _, err := sshForward([]byte(`{`), 22); err == nil {
		t.Error("bad JSON accepted")
	}
}

func TestParseFreed(t *testing.T) {
	if n := parseFreed("deleting '/nix/store/x'\n3 store paths deleted, 1.50 MiB freed\n"); n != 1572864 {
		t.Errorf("freed = %d", n)
	}
	if n := parseFreed("nothing"); n != -1 {
		t.Errorf("freed = %d", n)
	}
}

func TestRemoteError(t *testing.T) {
	e := &RemoteError{Host: "hv", Command: "microvm -u vm1", Status: 1, Stderr: "error: boom\nmore"}
	if got := e.Error(); got != "on hv, `microvm -u vm1` failed with exit status 1:\n  error: boom\n  more" {
		t.Errorf("%q", got)
	}
}
