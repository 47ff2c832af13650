package microvm

import (
	"os/exec"
	"strings"
	"testing"
)

func TestHostForwardUsesTheHostPort(t *testing.T) {
	js := []byte(`[{"from":"host","proto":"tcp","host":{"address":"","port":2222},"guest":{"address":"","port":22}},
	               {"from":"host","proto":"tcp","host":{"address":"127.0.0.1","port":8080},"guest":{"address":"","port":80}}]`)
	if bind, p, err := hostForward(js, 2222); err != nil || bind != "127.0.0.1" || p != 2222 {
		t.Errorf("port 2222: %s %d %v", bind, p, err)
	}
	// The default (22) is the forward to the guest's sshd.
	if _, p, err := hostForward(js, 22); err != nil || p != 2222 {
		t.Errorf("default port: %d %v", p, err)
	}
	// A guest port is not a host port: port = 80 finds nothing (the old code took it as the guest port).
	if _, _, err := hostForward(js, 80); err == nil || !strings.Contains(err.Error(), "no TCP forward from host port 80") || !strings.Contains(err.Error(), "host 8080 → guest 80") {
		t.Errorf("port 80: %v", err)
	}
}

func TestCheckLocal(t *testing.T) {
	fwd := []ForwardPort{{From: "host", Proto: "tcp"}}
	fwd[0].Host.Port, fwd[0].Guest.Port = 2201, 22
	ok := localFacts{Hypervisor: "qemu", System: "x86_64-linux", Interfaces: []string{"user"}, ForwardPorts: fwd}
	if _, p, err := checkLocal("vm1", ok, "x86_64-linux", 2201); err != nil || p != 2201 {
		t.Errorf("ok: %d %v", p, err)
	}
	for _, c := range []struct {
		f    func(*localFacts)
		want string
	}{
		{func(f *localFacts) { f.Hypervisor = "cloud-hypervisor" }, `microvm.hypervisor is "cloud-hypervisor"`},
		{func(f *localFacts) { f.Interfaces = []string{"tap"} }, `no type = "user" interface (it has tap)`},
		{func(f *localFacts) { f.System = "aarch64-linux" }, "built for aarch64-linux (nixpkgs.hostPlatform), this machine is x86_64-linux"},
		{func(f *localFacts) { f.ForwardPorts = nil }, "no TCP forward from host port 2201 (it has none)"},
	} {
		f := ok
		c.f(&f)
		if _, _, err := checkLocal("vm1", f, "x86_64-linux", 2201); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", f, err, c.want)
		}
	}
}

// TestLocalFactsExprEvaluates applies the expression with the real Nix to a
// config shaped like a NixOS one (attribute paths of nixos-modules/microvm/options.nix).
func TestLocalFactsExprEvaluates(t *testing.T) {
	realNix(t)
	cfg := `{ microvm = { hypervisor = "qemu"; interfaces = [ { type = "user"; id = "qemu"; mac = "02:00:00:00:00:01"; } ];
	  forwardPorts = [ { host.port = 2201; guest.port = 22; } ]; }; nixpkgs.hostPlatform.system = "aarch64-linux"; }`
	out, err := exec.Command("nix", nixArgs("eval", "--json", "--expr", "("+localFactsExpr+") "+cfg)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(string(out), `"system":"aarch64-linux"`) || !strings.Contains(string(out), `"forwardPorts":[{"from":"host","guest":{"address":"","port":22},"host":{"address":"","port":2201},"proto":"tcp"}]`) {
		t.Errorf("facts: %s", out)
	}
}
