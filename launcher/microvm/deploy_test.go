package microvm

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestFlakePath(t *testing.T) {
	dir := "/var/lib/microvms/slot1"
	for ref, want := range map[string]string{
		"/root/infra":                     "/root/infra",
		"/root/infra/":                    "/root/infra",
		"git+file:///root/infra?ref=main": "/root/infra",
		"path:/root/infra":                "/root/infra",
		"./x":                             dir + "/x",
		"root/simple-microvm-infra":       "", // an indirect flake reference (registry entry "root")
		"github:owner/repo":               "",
		"git+file:///etc/nixos":           "/etc/nixos",
	} {
		if got := flakePath(ref, dir); got != want {
			t.Errorf("flakePath(%q) = %q, want %q", ref, got, want)
		}
	}
	if !isStorePath("/nix/store/0c4mkd7v9q1gjz1ylk7s8mjdl2wy0x0s-source") || isStorePath("/root/store/x") || isStorePath("/nix/store/short-source") {
		t.Error("isStorePath")
	}
}

func TestPlanDeploy(t *testing.T) {
	dir, ours := "/var/lib/microvms/slot1", "/root/infra"
	cases := []struct {
		in   vmInfo
		want deployKind
		why  string
	}{
		{vmInfo{Name: "slot1"}, deployCreate, ""},
		{vmInfo{Name: "slot1", Exists: true}, deployCreateOverEmpty, "exists but is empty"},
		{vmInfo{Name: "slot1", Exists: true, Entries: "storage"}, deployAdopt, "it holds: storage"},
		{vmInfo{Name: "slot1", Exists: true, Current: "/nix/store/x", Entries: "current"}, deployAdopt, "without a flake file"},
		{vmInfo{Name: "slot1", Exists: true, HasFlake: true, Flake: "git+file:///root/infra", Entries: "current flake"}, deployUpdate, ""},
		{vmInfo{Name: "slot1", Exists: true, HasFlake: true, Flake: "root/simple-microvm-infra"}, deployRepoint, `names "root/simple-microvm-infra"`},
		{vmInfo{Name: "slot1", Exists: true, HasFlake: true, Flake: "git+file:///etc/nixos"}, deployRepoint, "that is /etc/nixos"},
		{vmInfo{Name: "slot1", Exists: true, HasFlake: true, Flake: "/nix/store/0c4mkd7v9q1gjz1ylk7s8mjdl2wy0x0s-source"}, deploySwitch, "store copy"},
		{vmInfo{Name: "slot1", Exists: true, Toplevel: "/nix/store/y", HasFlake: false}, deploySwitch, "fully declarative"},
	}
	for _, c := range cases {
		p := planDeploy(c.in, dir, ours)
		if p.Kind != c.want || !strings.Contains(p.Why, c.why) || (c.why == "" && p.Why != "") {
			t.Errorf("%+v: plan %+v, want kind %d with %q", c.in, p, c.want, c.why)
		}
	}
}

// TestInfoScriptReadsTheLayout runs the status query in bash over a state
// directory laid out like microvm.nix's (no systemctl here: an empty state).
func TestInfoScriptReadsTheLayout(t *testing.T) {
	state := t.TempDir()
	for _, d := range []string{"empty", "flaky", "decl", "shares/storage"} {
		os.MkdirAll(filepath.Join(state, d), 0o755)
	}
	// The host module writes the flake with echo (a trailing newline).
	os.WriteFile(filepath.Join(state, "flaky", "flake"), []byte("git+file:///root/infra\n"), 0o644)
	os.Symlink("/nix/store/r-microvm-qemu-flaky", filepath.Join(state, "flaky", "current"))
	os.Symlink("/nix/store/t-nixos-system-decl", filepath.Join(state, "decl", "toplevel"))
	out, err := exec.Command("bash", "-c", "PATH=/nonexistent:$PATH; "+infoScript(state, []string{"empty", "flaky", "decl", "shares", "missing"})).Output()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	m, err := parseInfo(string(out))
	if err != nil {
		t.Fatal(err)
	}
	if e := m["empty"]; !e.Exists || e.Entries != "" || e.HasFlake {
		t.Errorf("empty: %+v", e)
	}
	if f := m["flaky"]; !f.HasFlake || f.Flake != "git+file:///root/infra" || f.Current != "/nix/store/r-microvm-qemu-flaky" || f.Entries != "current flake" {
		t.Errorf("flaky: %+v", f)
	}
	if d := m["decl"]; d.Toplevel != "/nix/store/t-nixos-system-decl" || d.HasFlake {
		t.Errorf("decl: %+v", d)
	}
	if s := m["shares"]; s.Entries != "storage" {
		t.Errorf("shares: %+v", s)
	}
	if x := m["missing"]; x.Exists {
		t.Errorf("missing: %+v", x)
	}
	for _, n := range []string{"empty", "flaky", "decl", "shares", "missing"} {
		if !strings.Contains(string(out), n+"\t") {
			t.Errorf("no line for %s", n)
		}
	}
	want := map[string]deployKind{"empty": deployCreateOverEmpty, "flaky": deployUpdate, "decl": deploySwitch, "shares": deployAdopt, "missing": deployCreate}
	for n, k := range want {
		if p := planDeploy(m[n], filepath.Join(state, n), "/root/infra"); p.Kind != k {
			t.Errorf("%s: plan %+v, want %d", n, p, k)
		}
	}
}
