//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestHostileGuest attacks devvm from inside a running VM, as root in the
// guest, through the read-write share (which is the whole checkout): every
// file devvm once kept in the checkout is forged or replaced by a link to a
// host file, a disk is planted, and ssh_config files carry `Match exec`.
// Then devvm's own commands run, and OpenSSH with the documented Include.
// Nothing outside the share may change and no guest-written command may run.
// Before the attack, a plain session leaves nothing in the checkout beyond
// the committed files.
func TestHostileGuest(t *testing.T) {
	w := newWorld(t, "hostile")
	w.setVmfile(`memory = "512M"`, `cpus = 1`, `boot_timeout = "3m"`)
	name := vmName(w.checkout)
	git := func(args ...string) string {
		t.Helper()
		// The checkout belongs to the guest user's uid (the harness), not to root.
		c := exec.Command("git", append([]string{"-C", w.checkout, "-c", "user.name=t", "-c", "user.email=t@t", "-c", "safe.directory=*"}, args...)...)
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	git("init", "-q")
	git("add", ".")
	git("commit", "-qm", "devvm files")
	clean := func(when string) {
		t.Helper()
		if st := git("status", "--porcelain", "--ignored"); st != "" {
			t.Errorf("after %s, the checkout holds files beyond the committed ones:\n%s", when, st)
		}
	}
	clean("init")
	w.ok("up")
	clean("up")
	w.ok("ssh", "--", "true")
	clean("ssh")
	w.ok("halt")
	clean("halt")
	w.ok("up")
	clean("up again")

	sentinel := filepath.Join(w.home, "sentinel")
	os.WriteFile(sentinel, []byte("keep\n"), 0o600)
	pwned := filepath.Join(w.home, "pwned")
	guestDir := "/mnt/" + name + "/.devvm/" + name
	var script strings.Builder
	script.WriteString("set -e; mkdir -p " + guestDir + "; cd " + guestDir + "\n")
	for _, f := range []string{"lock", "qemu.argv", "qemu.pid", "console.log", "build.log", "known_hosts",
		"share-share0.pid", "share-share0.log", "record.json", "gcroots", "disk-linked.qcow2"} {
		script.WriteString("ln -sfn " + sentinel + " " + f + "\n")
	}
	script.WriteString("printf 'Match exec \"touch " + pwned + "\"\\n' > ssh_config\n")
	script.WriteString("printf 'Match exec \"touch " + pwned + "\"\\n' > ../ssh_config\n")
	script.WriteString(`printf '{"key":"k","run_vm":"/bin/sh","artifact":"/bin/sh","gc_root":"` + sentinel + `"}' > build.json` + "\n")
	script.WriteString(`printf '{"identity":{"pid":1},"process":{"pid":1},"ssh_port":22,"ready":true}' > runtime.json` + "\n")
	script.WriteString("head -c 65536 /dev/zero > disk-0000000000000000.qcow2\n")
	w.ok("ssh", "--", "sudo", "-n", "sh", "-c", script.String())

	for _, args := range [][]string{{"status"}, {"ssh-config"}, {"halt"}, {"up"}, {"ssh", "--", "true"}, {"status", "--json"}, {"logs", "-n", "5"}} {
		w.run(args...)
	}
	// The documented Include line (docs/dev-vm.md), with ~ spelt out.
	cfg := filepath.Join(t.TempDir(), "config")
	os.WriteFile(cfg, []byte("Include "+filepath.Join(w.home, ".local/state/devvm/checkouts/*/*/ssh_config")+"\n"), 0o600)
	if out, err := exec.Command("ssh", "-F", cfg, "-G", "devvm-"+name).CombinedOutput(); err != nil {
		t.Errorf("ssh -G with the documented Include: %v\n%s", err, out)
	} else if !strings.Contains(string(out), "hostkeyalias devvm-"+name) {
		t.Errorf("ssh -G does not see devvm's stanza through the documented Include:\n%s", out)
	}
	w.ok("destroy", "-f", "--yes")

	if b, _ := os.ReadFile(sentinel); string(b) != "keep\n" {
		t.Errorf("a file outside the share changed: %q", b)
	}
	if st, err := os.Lstat(sentinel); err != nil || st.Mode()&os.ModeSymlink != 0 {
		t.Errorf("the sentinel was replaced: %v", err)
	}
	if _, err := os.Stat(pwned); err == nil {
		t.Errorf("a command the guest wrote ran on the host")
	}
	if !alive(1) {
		t.Fatalf("pid 1 is gone")
	}
}
