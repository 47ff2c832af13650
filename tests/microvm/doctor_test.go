//go:build e2e

package microvmtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devvm/devvm/launcher/microvm"
	"github.com/devvm/devvm/launcher/vmfile"
)

// TestDoctor checks a checkout whose Vmfile has backend = "microvm" and a
// hypervisor: the test sshd with the stand-ins, which has the microvm command
// but (on this test host) neither flakes enabled in its nix.conf nor, usually,
// /dev/kvm.
func TestDoctor(t *testing.T) {
	w := newWorld(t)
	hv := w.startHypervisor()
	hv.authorize(t, writeKey(t, filepath.Join(w.tmp, "hv_id")))
	t.Setenv("NIX_CONFIG", "store = "+filepath.Join(w.tmp, "nix-eval-store")) // the real nix evaluates the checkout's flake
	w.machines["slot1"] = map[string]any{"user": "dev"}
	w.machines["slot2"] = map[string]any{"user": "dev"}
	vmf := func(known string) string {
		return fmt.Sprintf("backend = \"microvm\"\n[microvm.machines.slot1]\naddress = \"10.1.0.2\"\n[microvm.machines.slot2]\naddress = \"10.2.0.2\"\n"+
			"[microvm.remote]\ndestination = \"root@127.0.0.1:%d\"\nidentity_file = %q\nknown_hosts = %q\ncheckout = %q\n", hv.port, filepath.Join(w.tmp, "hv_id"), known, w.hvCheck)
	}
	w.gitCheckouts(vmf(hv.knownHosts))
	checks := func(dir string) map[string]microvm.Check {
		t.Helper()
		vf, err := vmfile.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]microvm.Check{}
		for _, c := range microvm.DoctorChecks(context.Background(), w.hostEnv, vf) {
			t.Logf("%-20s ok=%v %s | %s", c.Name, c.OK, c.Detail, c.Fix)
			m[c.Name] = c
		}
		return m
	}

	m := checks(w.checkout)
	for _, n := range []string{"nix", "nix flakes", "flake", "hypervisor reachable", "hypervisor host key", "hypervisor login", "hypervisor checkout", "microvm command"} {
		if !m[n].OK {
			t.Errorf("%s: %+v", n, m[n])
		}
	}
	if c := m["hypervisor flakes"]; c.OK || !c.Required || !strings.Contains(c.Fix, `experimental-features = [ "nix-command" "flakes" ]`) {
		t.Errorf("hypervisor flakes (its nix.conf enables none): %+v", c)
	}
	_, kvmErr := os.Stat("/dev/kvm")
	if c := m["hypervisor kvm"]; c.OK != (kvmErr == nil) || (!c.OK && !strings.Contains(c.Fix, "hardware virtualization")) {
		t.Errorf("hypervisor kvm (/dev/kvm: %v): %+v", kvmErr, c)
	}

	t.Run("unknown host key", func(t *testing.T) {
		dir := filepath.Join(w.tmp, "unknown")
		os.MkdirAll(dir, 0o755)
		empty := filepath.Join(w.tmp, "empty_known_hosts")
		os.WriteFile(empty, nil, 0o600)
		os.WriteFile(filepath.Join(dir, "Vmfile"), []byte(vmf(empty)), 0o644)
		m := checks(dir)
		if c := m["hypervisor host key"]; c.OK || !strings.Contains(c.Fix, fmt.Sprintf("ssh-keyscan -p %d 127.0.0.1", hv.port)) {
			t.Errorf("host key: %+v", c)
		}
		if _, ran := m["microvm command"]; ran {
			t.Errorf("checks ran on a hypervisor whose key is unknown")
		}
	})

	t.Run("renamed machine", func(t *testing.T) {
		os.WriteFile(filepath.Join(w.checkout, "Vmfile"), []byte(strings.Replace(vmf(hv.knownHosts), "slot1]", "vm1]", 1)), 0o644)
		if c := checks(w.checkout)["flake"]; c.OK || !strings.Contains(c.Detail, `machine "vm1"`) || !strings.Contains(c.Detail, "it has: slot1, slot2") {
			t.Errorf("flake: %+v", c)
		}
	})
}
