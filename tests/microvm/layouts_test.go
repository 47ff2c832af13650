//go:build e2e

package microvmtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/devvm/devvm/launcher/backend"
)

// TestRemoteLayouts deploys to a hypervisor laid out like the seed's later
// commits: the VMs are declared in the hypervisor's own configuration
// (microvm.vms), systemd-tmpfiles pre-creates their state directories, one
// VM is fully declarative, and the machines were renamed.
//
//	slot1  imperative, its /var/lib/microvms/slot1 pre-created empty by a tmpfiles rule
//	slot2  microvm.vms.slot2 = { flake = self; updateFlake = "root/simple-microvm-infra"; }
//	slot3  microvm.vms.slot3.config = { … } (fully declarative: current + toplevel)
func TestRemoteLayouts(t *testing.T) {
	w := newWorld(t)
	hv := w.startHypervisor()
	hv.authorize(t, writeKey(t, filepath.Join(w.tmp, "hv_id")))
	key := w.devvmKey()
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string]int{"slot1": freePort(t), "slot2": freePort(t), "slot3": freePort(t)}
	guest := func(n string) map[string]any {
		return map[string]any{"user": "dev", "authorized_keys": []string{key}, "ssh_port": ports[n], "version": "1"}
	}
	w.machines["slot1"] = guest("slot1")
	w.machines["slot2"] = guest("slot2")
	slot3 := guest("slot3")
	w.machines[host] = map[string]any{"vms": map[string]any{
		"slot2": map[string]any{"updateFlake": "root/simple-microvm-infra"},
		"slot3": map[string]any{"config": slot3},
	}}
	vmf := `backend = "microvm"

[ssh]
user = "dev"

[microvm]
flake = "."
`
	for _, n := range []string{"slot1", "slot2", "slot3"} {
		vmf += fmt.Sprintf("\n[microvm.machines.%s]\naddress = \"127.0.0.1\"\nport = %d\n", n, ports[n])
	}
	vmf += fmt.Sprintf("\n[microvm.remote]\ndestination = \"root@127.0.0.1:%d\"\nidentity_file = %q\nknown_hosts = %q\ncheckout = %q\n",
		hv.port, filepath.Join(w.tmp, "hv_id"), hv.knownHosts, w.hvCheck)
	w.gitCheckouts(vmf)
	state := filepath.Join(w.root, "var/lib/microvms")
	// The hypervisor as provisioned: tmpfiles rule `d /var/lib/microvms/slot1`, then the host's first switch,
	// which installs slot2 (flake file = its updateFlake) and slot3 (current + toplevel).
	os.MkdirAll(filepath.Join(state, "slot1"), 0o755)
	w.onHypervisor("nixos-rebuild switch --flake " + w.hvCheck + "#" + host)
	if b, _ := os.ReadFile(filepath.Join(state, "slot2", "flake")); strings.TrimSpace(string(b)) != "root/simple-microvm-infra" {
		t.Fatalf("the host's install of slot2 wrote flake %q", b)
	}
	if w.link("slot3", "toplevel") == "" {
		t.Fatal("the host's install of slot3 wrote no toplevel")
	}

	b := w.open(w.checkout)
	ctx := context.Background()
	up := func(names ...string) string {
		t.Helper()
		if err := b.Up(ctx, names, backend.UpOptions{Timeout: 120 * time.Second}); err != nil {
			t.Fatalf("up: %v", err)
		}
		return w.ui.Take()
	}

	t.Run("first deploy", func(t *testing.T) {
		out := up()
		for _, want := range []string{
			"exists but is empty",
			"$ rmdir " + filepath.Join(state, "slot1") + " && microvm -c slot1 -f " + w.hvCheck,
			`/flake names "root/simple-microvm-infra"`,
			"$ printf '%s' " + w.hvCheck + " > " + filepath.Join(state, "slot2", "flake") + " && microvm -u slot2",
			"fully declarative",
			"$ nixos-rebuild switch --flake '" + w.hvCheck + "#" + host + "'",
			"restarted none; started slot1, slot2, slot3; unchanged none",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("up output lacks %q", want)
			}
		}
		if strings.Contains(out, "microvm -u slot3") || strings.Contains(out, "cannot be updated manually") {
			t.Errorf("devvm ran microvm -u on the declarative slot3")
		}
		if b, _ := os.ReadFile(filepath.Join(state, "slot2", "flake")); string(b) != w.hvCheck {
			t.Errorf("slot2's flake file holds %q, want the checkout %s", b, w.hvCheck)
		}
		for _, n := range []string{"slot1", "slot2", "slot3"} {
			if got := sshRun(t, b, n, "whoami"); got != "dev" {
				t.Errorf("whoami in %s = %q", n, got)
			}
		}
		for _, root := range []string{"slot1", "booted-slot1"} {
			if _, err := os.Lstat(filepath.Join(w.root, "nix/var/nix/gcroots/microvm", root)); err != nil {
				t.Errorf("gcroot %s: %v", root, err)
			}
		}
	})

	t.Run("a change reaches every layout", func(t *testing.T) {
		cur2, cur3 := w.link("slot2", "current"), w.link("slot3", "current")
		w.machines["slot2"]["version"] = "2"
		slot3["version"] = "2"
		w.commit("slot2, slot3: version 2")
		out := up()
		for _, want := range []string{"$ microvm -u slot2", "nixos-system-slot2: 25.11.1 → 25.11.2",
			"$ nixos-rebuild switch --flake", "restarted slot2, slot3; started none; unchanged slot1"} {
			if !strings.Contains(out, want) {
				t.Errorf("up output lacks %q", want)
			}
		}
		if strings.Contains(out, "names \"") {
			t.Errorf("slot2's flake file was re-pointed again")
		}
		if w.link("slot2", "current") == cur2 || w.link("slot3", "current") == cur3 {
			t.Errorf("runners did not change: slot2 %s, slot3 %s", w.link("slot2", "current"), w.link("slot3", "current"))
		}
		if w.link("slot2", "old") != cur2 || w.link("slot3", "old") != "" {
			t.Errorf("old links: slot2 %q (want %s), slot3 %q (the host generation is its rollback)", w.link("slot2", "old"), cur2, w.link("slot3", "old"))
		}
		for _, n := range []string{"slot2", "slot3"} {
			if w.link(n, "booted") != w.link(n, "current") {
				t.Errorf("%s booted %s, current %s", n, w.link(n, "booted"), w.link(n, "current"))
			}
		}
		// Nothing changed since: an honest "unchanged".
		out = up()
		if !strings.Contains(out, "No reboot of MicroVM slot2 required.") || !strings.Contains(out, "restarted none; started none; unchanged slot1, slot2, slot3") {
			t.Errorf("second up:\n%s", out)
		}
	})

	t.Run("rollback of a declarative VM switches the host back", func(t *testing.T) {
		cur3 := w.link("slot3", "current")
		if err := b.Rollback(ctx, []string{"slot3"}); err != nil {
			t.Fatalf("rollback: %v", err)
		}
		out := w.ui.Take()
		if !strings.Contains(out, "$ nixos-rebuild switch --rollback") || !strings.Contains(out, "rolls back the host") {
			t.Errorf("rollback output:\n%s", out)
		}
		if w.link("slot3", "current") == cur3 || w.link("slot3", "booted") != w.link("slot3", "current") {
			t.Errorf("slot3 after rollback: current %s (was %s), booted %s", w.link("slot3", "current"), cur3, w.link("slot3", "booted"))
		}
		if got := sshRun(t, b, "slot3", "echo back"); got != "back" {
			t.Errorf("slot3 after rollback: %q", got)
		}
	})

	t.Run("renamed machines", func(t *testing.T) {
		dir := filepath.Join(w.tmp, "renamed")
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "Vmfile"), []byte(strings.Replace(vmf, "[microvm.machines.slot1]", "[microvm.machines.vm1]", 1)), 0o644)
		err := w.open(dir).Up(ctx, []string{"vm1"}, backend.UpOptions{Timeout: 30 * time.Second})
		if err == nil || !strings.Contains(err.Error(), `machine "vm1"`) || !strings.Contains(err.Error(), "slot1, slot2") {
			t.Fatalf("up of a machine the flake lacks: %v", err)
		}
		if out := w.ui.Take(); strings.Contains(out, "microvm -c vm1") {
			t.Errorf("devvm tried to create vm1:\n%s", out)
		}
		t.Logf("error as the user sees it: %v", err)
	})
}
