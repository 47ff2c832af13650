//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGuixGuest checks, through devvm, that the default test guest behaves
// like a Guix System guest where devvm depends on it (shared notes
// guix-guest-facts.md), so the other tests exercise devvm against that:
// a non-root user, no poweroff, a shutdown that rejects -h, sudo reachable
// only through the login profile's PATH, and new host keys every boot.
func TestGuixGuest(t *testing.T) {
	w := newWorld(t, "guixguest")
	w.setVmfile(`memory = "512M"`, `cpus = 1`)
	w.ok("up")
	name := vmName(w.checkout)

	if r := w.ok("ssh", "--", "id", "-u"); strings.TrimSpace(r.stdout) != "1000" {
		t.Errorf("login uid %q, want 1000 (a real user, as in devvm's templates)", r.stdout)
	}
	if r := w.ok("ssh", "--", "sudo", "-n", "id", "-u"); strings.TrimSpace(r.stdout) != "0" {
		t.Errorf("sudo -n id -u: %q, want 0", r.stdout)
	}
	// %base-packages ships no poweroff (guix:gnu/system.scm:945-997).
	if r := w.run("ssh", "--", "sudo", "-n", "poweroff"); r.code == 0 || !strings.Contains(r.stderr, "poweroff: command not found") {
		t.Errorf("sudo -n poweroff: exit %d, stderr %q; want sudo's \"command not found\"", r.code, r.stderr)
	}
	// shutdown is Shepherd's halt (shep:Makefile.am:183-186), which knows no -h (args.scm:287-289).
	if r := w.run("ssh", "--", "sudo", "-n", "shutdown", "-h", "now"); r.code != 1 || r.stdout != "Unknown option: `-h'.\n" {
		t.Errorf("sudo -n shutdown -h now: exit %d, stdout %q", r.code, r.stdout)
	}
	// sshd's default PATH (guix:gnu/packages/ssh.scm:252) holds only the
	// non-setuid copy of sudo: the login profile is what finds the real one
	// (notes 6c; TestShareUnderHomeBreaksSudo boots without it).
	r := w.run("ssh", "--", "bash", "--norc", "-c", "PATH=/run/current-system/profile/bin; command -v sudo; sudo -n true")
	if r.stdout != "/run/current-system/profile/bin/sudo\n" || !strings.Contains(r.stderr, "must be owned by uid 0 and have the setuid bit set") {
		t.Errorf("sudo of the system profile: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	// Host keys are made at each boot (guix:gnu/services/ssh.scm:218-223).
	kh := filepath.Join(w.vmDir(name), "known_hosts")
	first, err := os.ReadFile(kh)
	if err != nil {
		t.Fatal(err)
	}
	w.cleanHalt()
	w.ok("up")
	second, err := os.ReadFile(kh)
	if err != nil {
		t.Fatal(err)
	}
	if string(first) == string(second) {
		t.Errorf("the guest kept its host key across boots:\n%s", first)
	}
	w.cleanHalt()
}

// TestBusyboxGuest runs the lifecycle devvm depends on against the busybox
// variant of the guest (busybox poweroff and acpid, a uid-0 login behind a
// sudo shim): `sudo -n poweroff` is the first command of devvm's halt.
func TestBusyboxGuest(t *testing.T) {
	w := newWorld(t, "bbguest", busyboxGuest...)
	w.setVmfile(`memory = "512M"`, `cpus = 1`)
	w.ok("up")
	if r := w.ok("ssh", "--", "id", "-u"); strings.TrimSpace(r.stdout) != "0" {
		t.Fatalf("login uid %q: this is not the busybox guest", r.stdout)
	}
	if err := os.WriteFile(filepath.Join(w.checkout, "hello.txt"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := w.ok("ssh", "--", "cat", "/mnt/"+vmName(w.checkout)+"/hello.txt"); r.stdout != "hi\n" {
		t.Errorf("guest read %q from the share", r.stdout)
	}
	w.cleanHalt()
}

// TestShareUnderHomeRefused: a share mounted under /home/<user> on a Guix
// guest leaves the home root-owned and without skeleton, because file
// systems are mounted (mount point made as root) before homes are created
// (notes A1; the test guest reproduces it): non-interactive SSH then lacks
// the login profile's PATH, sudo is the non-setuid copy, and the graceful
// halt fails. devvm refuses such a Vmfile before building.
func TestShareUnderHomeRefused(t *testing.T) {
	w := newWorld(t, "homeshare")
	w.setVmfile(`memory = "512M"`, `cpus = 1`, `guest = "/home/dev/src"`)
	// devvm refuses such a Vmfile before it builds anything, saying why.
	r := w.run("up")
	if r.code == 0 || !strings.Contains(r.stderr, "/home/dev") || !strings.Contains(r.stderr, "/mnt/") {
		t.Fatalf("up with a share under /home/dev: exit %d\n%s\nwant a refusal naming the path and suggesting /mnt/…", r.code, r.stderr)
	}
	if w.guixRuns() != 0 {
		t.Errorf("guix ran for a Vmfile devvm refuses")
	}
}
