//go:build e2e

package microvmtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devvm/devvm/templates"
)

// TestTemplateParses checks the shipped flake template with the real Nix
// parser (Debian package nix-bin); evaluating it would need its inputs from
// the network.
func TestTemplateParses(t *testing.T) {
	nixInst, err := exec.LookPath("nix-instantiate")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but nix-instantiate is missing (apt-get install nix-bin)")
		}
		t.Skip("nix-instantiate is missing (apt-get install nix-bin)")
	}
	src, err := templates.MicroVMFile("flake.nix")
	if err != nil {
		t.Fatalf("the template is not embedded: %v", err)
	}
	f := filepath.Join(t.TempDir(), "flake.nix")
	os.WriteFile(f, src, 0o644)
	out, err := exec.Command(nixInst, "--parse", f).CombinedOutput()
	if err != nil {
		t.Fatalf("nix-instantiate --parse %s: %v\n%s", f, err, out)
	}
	for _, want := range []string{"declaredRunner", "forwardPorts", "microvm-nix/microvm.nix"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the parsed template lacks %q", want)
		}
	}
	if _, err := templates.MicroVMFile("README.md"); err != nil {
		t.Errorf("README.md is not embedded: %v", err)
	}
}
