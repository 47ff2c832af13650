package project

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/vmfile"
	"github.com/devvm/devvm/tests/standin/standintest"
)

// testEnv is a host environment rooted in temp dirs, with the stand-in guix.
func testEnv(t testing.TB) (*hostenv.Env, string) { return standintest.Env(t) }

func quietUI() *backend.UI { return standintest.QuietUI() }

func newCheckout(t testing.TB, env *hostenv.Env, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "qbuf")
	os.MkdirAll(dir, 0o755)
	for name, text := range files {
		os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644)
	}
	if err := Init(context.Background(), env, quietUI(), InitOptions{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestInit(t *testing.T) {
	env, _ := testEnv(t)
	dir := newCheckout(t, env, map[string]string{
		"manifest.scm": `(specifications->manifest '("cmake"))`,
		".gitignore":   "build/",
	})
	vf, err := vmfile.Load(dir)
	if err != nil {
		t.Fatalf("the Vmfile init wrote does not load: %v", err)
	}
	if vf.Name != "qbuf" || vf.Shares[0].Guest != "/mnt/qbuf" || vf.SSH.Port != 10022 || vf.Guix.Manifest != "manifest.scm" {
		t.Errorf("init's Vmfile: %+v", vf)
	}
	// A plain operating-system: the contract is the wrapper's, at build time.
	cfg, _ := os.ReadFile(filepath.Join(dir, "dev-vm.scm"))
	for _, want := range []string{"(operating-system", `(password-authentication? #f)`, "%qemu-static-networking"} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("dev-vm.scm lacks %s", want)
		}
	}
	for _, bad := range []string{"authorized", "share0", "specifications->packages"} {
		if strings.Contains(string(cfg), bad) {
			t.Errorf("dev-vm.scm has %s (the wrapper's job, or the manifest's)", bad)
		}
	}
	ch, _ := os.ReadFile(filepath.Join(dir, "channels.scm"))
	if !strings.Contains(string(ch), "230aa373f315f247852ee07dff34146e9b480aec") {
		t.Errorf("channels.scm is not the pinned default:\n%s", ch)
	}
	// devvm keeps no state in the checkout: nothing to ignore.
	if gi, _ := os.ReadFile(filepath.Join(dir, ".gitignore")); string(gi) != "build/" {
		t.Errorf(".gitignore: %q", gi)
	}
	if _, err := os.Stat(filepath.Join(dir, ".devvm")); err == nil {
		t.Errorf("init made a .devvm in the checkout")
	}

	// A second init keeps the user's edits; --force rewrites.
	os.WriteFile(filepath.Join(dir, "dev-vm.scm"), []byte(";; mine\n"), 0o644)
	if err := Init(context.Background(), env, quietUI(), InitOptions{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "dev-vm.scm")); string(b) != ";; mine\n" {
		t.Error("init overwrote dev-vm.scm without --force")
	}
	if err := Init(context.Background(), env, quietUI(), InitOptions{Dir: dir, Force: true}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "dev-vm.scm")); string(b) == ";; mine\n" {
		t.Error("--force did not rewrite dev-vm.scm")
	}
	if err := Init(context.Background(), env, quietUI(), InitOptions{Dir: dir, Template: "nope"}); err == nil || !strings.Contains(err.Error(), "default") {
		t.Errorf("unknown template: %v", err)
	}
}
