package project

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/vmfile"
)

// `devvm init` in a checkout with its own Guix files adopts them: the OS
// file becomes [guix] config, its 9p mount the checkout's share (tag kept),
// the pinned channels.scm stays, and nothing of the project is rewritten.
func TestInitAdoptsTheProjectsFiles(t *testing.T) {
	env, _ := testEnv(t)
	own := `(use-modules (gnu))
(operating-system
  (host-name "qbuf-dev")
  (file-systems (cons (file-system (mount-point "/mnt/workspace") (device "qbuf_share") (type "9p")) %base-file-systems)))
`
	channels := `(list (channel (name 'nonguix) (url "https://gitlab.com/nonguix/nonguix") (commit "1111111111111111111111111111111111111111"))
      (channel (inherit %default-guix-channel) (commit "230aa373f315f247852ee07dff34146e9b480aec")))
`
	files := map[string]string{"my-os.scm": own, "channels.scm": channels,
		"guix.scm": `(use-modules (guix packages)) (package (name "x"))`}
	dir := filepath.Join(t.TempDir(), "qbuf")
	for name, text := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644)
	}
	var out strings.Builder
	ui := &backend.UI{Err: &out}
	for _, force := range []bool{false, true} {
		if err := Init(context.Background(), env, ui, InitOptions{Dir: dir, Force: force}); err != nil {
			t.Fatal(err)
		}
	}
	vf, err := vmfile.Load(dir)
	if err != nil {
		t.Fatalf("the Vmfile init wrote does not load: %v", err)
	}
	if vf.Guix.Config != "my-os.scm" || vf.Guix.Manifest != "guix.scm" || len(vf.Shares) != 1 ||
		vf.Shares[0].Tag != "qbuf_share" || vf.Shares[0].Guest != "/mnt/workspace" || vf.Shares[0].Host != "." {
		t.Errorf("adopted Vmfile: config %q manifest %q shares %+v", vf.Guix.Config, vf.Guix.Manifest, vf.Shares)
	}
	if _, err := os.Stat(filepath.Join(dir, "dev-vm.scm")); err == nil {
		t.Error("init wrote dev-vm.scm next to the project's own OS file")
	}
	for name, text := range map[string]string{"my-os.scm": own, "channels.scm": channels} {
		if b, _ := os.ReadFile(filepath.Join(dir, name)); string(b) != text {
			t.Errorf("init (or --force) rewrote the project's %s", name)
		}
	}
	for _, want := range []string{"adopted the project's my-os.scm", `tag "qbuf_share"`, "kept channels.scm (the project's pin)", "guix.scm"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("init did not say %q:\n%s", want, out.String())
		}
	}
}
