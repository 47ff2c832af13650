//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ownConfig is a project's own VM config in the shape of qbuf's: its own 9p
// tag at /mnt/workspace, a user dev with a password, password SSH, dhcpcd,
// and no authorized key for devvm.
const ownConfig = `;; the project's own VM
(use-modules (gnu))
(use-service-modules networking ssh)
(operating-system
  (host-name "adopted-dev")
  (timezone "Etc/UTC")
  (bootloader (bootloader-configuration (bootloader grub-bootloader) (targets '("/dev/vda"))))
  (file-systems (cons* (file-system (mount-point "/") (device "/dev/vda1") (type "ext4"))
                       (file-system
                         (mount-point "/mnt/workspace")
                         (device "qbuf_share")
                         (type "9p")
                         (options "trans=virtio,version=9p2000.L"))
                       %base-file-systems))
  (users (cons (user-account (name "dev") (group "users") (password (crypt "dev" "$6$x"))) %base-user-accounts))
  (services (cons* (service dhcpcd-service-type)
                   (service openssh-service-type (openssh-configuration (password-authentication? #t)))
                   %base-services)))
`

// A checkout that ships its own VM config: `devvm init` adopts it (tag and
// mount point kept, file untouched) and devvm logs in with its own key,
// which the build-time wrapper adds.
func TestAdoptedConfig(t *testing.T) {
	w := newWorld(t, "adopted")
	cfg := filepath.Join(w.checkout, "dev-vm.scm")
	if err := os.WriteFile(cfg, []byte(ownConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(w.checkout, "marker"), []byte("from the host\n"), 0o644)
	r := w.ok("init", "--force")
	if !strings.Contains(r.stderr, "adopted the project's dev-vm.scm") {
		t.Errorf("init did not adopt the config:\n%s", r.stderr)
	}
	vmf, _ := os.ReadFile(filepath.Join(w.checkout, "Vmfile"))
	if !strings.Contains(string(vmf), `tag = "qbuf_share"`) || !strings.Contains(string(vmf), `guest = "/mnt/workspace"`) {
		t.Fatalf("the Vmfile does not share the checkout as the config mounts it:\n%s", vmf)
	}
	w.setVmfile(`memory = "512M"`, `cpus = 1`)
	w.ok("up")
	if r := w.run("ssh", "--", "cat", "/mnt/workspace/marker"); r.code != 0 || r.stdout != "from the host\n" {
		console, _ := os.ReadFile(filepath.Join(w.vmDir("adopted"), "console.log"))
		t.Fatalf("the project's share at /mnt/workspace: exit %d, %q, stderr %s\nconsole:\n%s", r.code, r.stdout, r.stderr, console)
	}
	if r := w.ok("ssh", "--", "id", "-un"); strings.TrimSpace(r.stdout) != "dev" {
		t.Errorf("logged in as %q, want dev", r.stdout)
	}
	if b, _ := os.ReadFile(cfg); string(b) != ownConfig {
		t.Error("devvm rewrote the project's dev-vm.scm")
	}
}
