//go:build e2e

package microvmtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/sshx"
	"github.com/devvm/devvm/launcher/state"
)

var gitEnv = []string{"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t"}

// gitCheckouts makes the flake's git repositories like the seed's: origin,
// the user's checkout with the Vmfile, and the hypervisor's clone.
func (w *world) gitCheckouts(vmf string) {
	t := w.t
	origin := filepath.Join(w.tmp, "origin.git")
	run(t, w.tmp, gitEnv, "git", "init", "-q", "--bare", "-b", "main", origin)
	os.MkdirAll(w.checkout, 0o755)
	run(t, w.checkout, gitEnv, "git", "init", "-q", "-b", "main")
	run(t, w.checkout, gitEnv, "git", "remote", "add", "origin", origin)
	os.WriteFile(filepath.Join(w.checkout, "Vmfile"), []byte(vmf), 0o644)
	os.WriteFile(filepath.Join(w.checkout, ".gitignore"), []byte(".devvm/\n"), 0o644)
	w.commit("initial")
	os.MkdirAll(filepath.Dir(w.hvCheck), 0o755)
	run(t, w.tmp, gitEnv, "git", "clone", "-q", origin, w.hvCheck)
}

// onHypervisor runs a shell command on the hypervisor's checkout by hand, as
// the team does over ssh (the stand-ins first in PATH).
func (w *world) onHypervisor(cmd string) string {
	return run(w.t, w.hvCheck, append(gitEnv, w.env...), "bash", "-c", "export PATH="+w.standin+":$PATH; "+cmd)
}

// commit commits and pushes the local checkout (the seed's step 2).
func (w *world) commit(msg string) {
	w.writeFlake(w.checkout)
	run(w.t, w.checkout, gitEnv, "git", "add", "-A")
	run(w.t, w.checkout, gitEnv, "git", "commit", "-q", "-m", msg)
	run(w.t, w.checkout, gitEnv, "git", "push", "-q", "origin", "HEAD:main")
}

func TestRemote(t *testing.T) {
	w := newWorld(t)
	hv := w.startHypervisor()
	hvSigner := writeKey(t, filepath.Join(w.tmp, "hv_id"))
	hv.authorize(t, hvSigner)
	key := w.devvmKey()
	ports := map[string]int{"vm1": freePort(t), "vm2": freePort(t), "vm3": freePort(t)}
	for _, n := range []string{"vm1", "vm2", "vm3"} {
		w.machines[n] = map[string]any{"user": "dev", "authorized_keys": []string{key}, "ssh_port": ports[n], "version": "1"}
	}
	w.machines["vm3"]["run"] = false // its runner has no bin/microvm-run: systemd skips the start

	// The flake in git: origin, the user's checkout, the hypervisor's clone.
	// The share every machine mounts: mode defaults to ssh with a remote, so
	// devvm serves it from here through the hypervisor as jump host (the
	// stand-in guests have no 9p of their own).
	shareDir := filepath.Join(w.tmp, "infra-share")
	os.MkdirAll(shareDir, 0o755)
	os.WriteFile(filepath.Join(shareDir, "hello.txt"), []byte("from the host\n"), 0o644)
	vmf := fmt.Sprintf(`name = "infra"
backend = "microvm"

[ssh]
user = "dev"

[microvm]
flake = "."

[microvm.machines.vm1]
address = "127.0.0.1"
port = %d

[microvm.machines.vm2]
address = "127.0.0.1"
port = %d

[microvm.machines.vm3]
address = "127.0.0.1"
port = %d

[microvm.remote]
destination = "root@127.0.0.1:%d"
identity_file = %q
known_hosts = %q
checkout = %q

[[share]]
host = %q
guest = "/mnt/infra"
`, ports["vm1"], ports["vm2"], ports["vm3"], hv.port, filepath.Join(w.tmp, "hv_id"), hv.knownHosts, w.hvCheck, shareDir)
	w.gitCheckouts(vmf)

	b := w.open(w.checkout)
	ctx := context.Background()
	if got := strings.Join(b.Machines(), ","); got != "vm1,vm2,vm3" || b.Kind() != "microvm" {
		t.Fatalf("Machines = %s, Kind = %s", got, b.Kind())
	}

	t.Run("deploy two VMs", func(t *testing.T) {
		if err := b.Up(ctx, []string{"vm1", "vm2"}, backend.UpOptions{Timeout: 90 * time.Second}); err != nil {
			t.Fatalf("up: %v", err)
		}
		out := w.ui.Take()
		for _, want := range []string{
			"$ cd " + w.hvCheck + " && git pull --ff-only",
			"$ microvm -c vm1 -f " + w.hvCheck,
			"$ microvm -c vm2 -f " + w.hvCheck,
			"$ systemctl start microvm@vm1",
			"Created MicroVM vm1.", "Start with: \x1b[1;36msystemctl start microvm@vm1.service",
			"restarted none; started vm1, vm2; unchanged none",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("up output lacks %q", want)
			}
		}
		for _, n := range []string{"vm1", "vm2"} {
			if w.link(n, "current") == "" || w.link(n, "booted") != w.link(n, "current") {
				t.Errorf("%s: current %q booted %q", n, w.link(n, "current"), w.link(n, "booted"))
			}
			for _, root := range []string{n, "booted-" + n} {
				if _, err := os.Lstat(filepath.Join(w.root, "nix/var/nix/gcroots/microvm", root)); err != nil {
					t.Errorf("gcroot %s: %v", root, err)
				}
			}
		}
		st := statusOf(t, b, "vm1", "vm2", "vm3")
		if st["vm1"].State != backend.Running || st["vm2"].State != backend.Running || st["vm3"].State != backend.Stopped {
			t.Errorf("status: %+v", st)
		}
	})

	t.Run("ssh through the hypervisor as jump host", func(t *testing.T) {
		tg, err := b.SSHTarget(ctx, "vm1")
		if err != nil || tg.Jump == nil {
			t.Fatalf("target %+v, %v", tg, err)
		}
		if got := sshRun(t, b, "vm1", "whoami"); got != "dev" {
			t.Errorf("whoami in vm1 = %q", got)
		}
		// The emitted ssh_config works with OpenSSH's own ProxyJump.
		text, err := b.SSHConfig(ctx, "vm2")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(text, "ProxyJump devvm-hypervisor-127.0.0.1") {
			t.Errorf("ssh_config lacks the ProxyJump:\n%s", text)
		}
		cfg := filepath.Join(w.tmp, "ssh_config")
		os.WriteFile(cfg, []byte(text), 0o600)
		out, err := exec.Command("ssh", "-F", cfg, "-o", "BatchMode=yes", "devvm-vm2", "echo", "via-openssh").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "via-openssh") {
			t.Errorf("ssh -F %s devvm-vm2: %v\n%s\n%s", cfg, err, out, text)
		}
	})

	t.Run("the devvm command", func(t *testing.T) {
		out, errOut, code := w.cli(t, w.checkout, "ssh", "vm1", "--", "sh", "-c", "whoami; exit 7")
		if code != 7 || strings.TrimSpace(out) != "dev" {
			t.Errorf("devvm ssh vm1 -- …: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		out, errOut, code = w.cli(t, w.checkout, "status", "--json", "vm1", "vm3")
		var sts struct{ Machines []struct{ State string } }
		if code != 0 || json.Unmarshal([]byte(out), &sts) != nil || len(sts.Machines) != 2 || sts.Machines[0].State != backend.Running || sts.Machines[1].State != backend.Stopped {
			t.Errorf("devvm status --json vm1 vm3: exit %d\n%s%s", code, out, errOut)
		}
		if _, errOut, code = w.cli(t, w.checkout, "ssh", "nosuch", "--", "true"); code != 2 {
			t.Errorf("devvm ssh to an unknown machine: exit %d %s", code, errOut)
		}
	})

	t.Run("shares over SSH through the hypervisor", func(t *testing.T) {
		if got := sshRun(t, b, "vm1", "cat /mnt/infra/hello.txt"); got != "from the host" {
			t.Errorf("vm1 read %q from the share", got)
		}
		sshRun(t, b, "vm1", "echo from the guest > /mnt/infra/back.txt")
		if got, err := os.ReadFile(filepath.Join(shareDir, "back.txt")); err != nil || string(got) != "from the guest\n" {
			t.Errorf("the host read %q, %v", got, err)
		}
		procs := processesWith(shareMarker(w.checkout, "vm1"))
		if len(procs) != 1 {
			t.Fatalf("share-serve processes of vm1: %v", procs)
		}
		st := statusOf(t, b, "vm1")["vm1"]
		if want := "share /mnt/infra: served over SSH by pid " + procs[0]; !slices.Contains(st.Shares, want) {
			t.Errorf("status shares %q, want %q", st.Shares, want)
		}
		// A second up finds the server alive and starts no other.
		if err := b.Up(ctx, []string{"vm1"}, backend.UpOptions{Timeout: 90 * time.Second}); err != nil {
			t.Fatalf("up: %v", err)
		}
		if out := w.ui.Take(); strings.Contains(out, "mounted in the guest") {
			t.Errorf("a second up started another server:\n%s", out)
		}
		if got := processesWith(shareMarker(w.checkout, "vm1")); !slices.Equal(got, procs) {
			t.Errorf("after a second up, share-serve processes %v, before %v", got, procs)
		}
	})

	t.Run("update restarts only the changed VM", func(t *testing.T) {
		pid1, pid2, old2 := w.unitPID("vm1"), w.unitPID("vm2"), w.link("vm2", "current")
		w.machines["vm2"]["version"] = "2"
		w.commit("vm2: version 2")
		if err := b.Up(ctx, []string{"vm1", "vm2"}, backend.UpOptions{Timeout: 90 * time.Second}); err != nil {
			t.Fatalf("up: %v", err)
		}
		out := w.ui.Take()
		for _, want := range []string{"$ microvm -u vm1", "$ microvm -u vm2", "No reboot of MicroVM vm1 required.",
			"nixos-system-vm2: 25.11.1 → 25.11.2", "$ systemctl restart microvm@vm2",
			"restarted vm2; started none; unchanged vm1"} {
			if !strings.Contains(out, want) {
				t.Errorf("up output lacks %q", want)
			}
		}
		if strings.Contains(out, "systemctl restart microvm@vm1") {
			t.Errorf("vm1 was restarted although its runner did not change")
		}
		if w.unitPID("vm1") != pid1 || w.unitPID("vm2") == pid2 {
			t.Errorf("pids: vm1 %s→%s (must stay), vm2 %s→%s (must change)", pid1, w.unitPID("vm1"), pid2, w.unitPID("vm2"))
		}
		if w.link("vm2", "old") != old2 || w.link("vm2", "current") == old2 || w.link("vm2", "booted") != w.link("vm2", "current") {
			t.Errorf("vm2 links: old %s current %s booted %s (previous %s)", w.link("vm2", "old"), w.link("vm2", "current"), w.link("vm2", "booted"), old2)
		}
		if got := sshRun(t, b, "vm2", "echo up"); got != "up" {
			t.Errorf("vm2 after restart: %q", got)
		}
	})

	t.Run("status of outdated and stopped VMs", func(t *testing.T) {
		// Someone updates vm1 on the hypervisor by hand without a restart (the seed's step 3).
		w.machines["vm1"]["version"] = "2"
		w.commit("vm1: version 2")
		w.onHypervisor("git pull -q --ff-only && microvm -u vm1")
		if err := b.Halt(ctx, []string{"vm2"}, backend.HaltOptions{}); err != nil {
			t.Fatalf("halt: %v", err)
		}
		if out := w.ui.Take(); !strings.Contains(out, "$ systemctl stop microvm@vm2") || !strings.Contains(out, `VM "vm2" halted`) {
			t.Errorf("halt output:\n%s", out)
		}
		if got := processesWith(shareMarker(w.checkout, "vm2")); len(got) != 0 {
			t.Errorf("share-serve processes of vm2 left after halt: %v", got)
		}
		st := statusOf(t, b)
		if s := st["vm1"]; s.State != backend.Running || !s.Outdated || !strings.Contains(s.Hint, "devvm restart vm1") {
			t.Errorf("vm1: %+v", s)
		}
		if s := st["vm2"]; s.State != backend.Stopped || s.Outdated {
			t.Errorf("vm2: %+v", s)
		}
		if s := st["vm3"]; s.State != backend.Stopped || !strings.Contains(s.Reason, "not created") {
			t.Errorf("vm3: %+v", s)
		}
		js, _ := json.Marshal(st["vm1"])
		if !strings.Contains(string(js), `"state":"running"`) || !strings.Contains(string(js), `"outdated":true`) {
			t.Errorf("json: %s", js)
		}
	})

	t.Run("rollback survives garbage collection", func(t *testing.T) {
		old, cur := w.link("vm2", "old"), w.link("vm2", "current")
		rep, err := b.GC(ctx, backend.GCOptions{})
		if err != nil || !rep.StoreGC {
			t.Fatalf("gc: %+v, %v", rep, err)
		}
		if _, err := os.Stat(old); err != nil {
			t.Fatalf("the old runner of vm2 was collected: %v", err)
		}
		if err := b.Rollback(ctx, []string{"vm2"}); err != nil {
			t.Fatalf("rollback: %v", err)
		}
		out := w.ui.Take()
		// vm2 was halted above: the rollback starts it (a running one is restarted).
		if !strings.Contains(out, "ln -sfn "+old+" ") || !strings.Contains(out, "$ systemctl start microvm@vm2") {
			t.Errorf("rollback output:\n%s", out)
		}
		if w.link("vm2", "current") != old || w.link("vm2", "booted") != old || w.link("vm2", "old") != cur {
			t.Errorf("after rollback: current %s booted %s old %s", w.link("vm2", "current"), w.link("vm2", "booted"), w.link("vm2", "old"))
		}
		if got := sshRun(t, b, "vm2", "echo back"); got != "back" {
			t.Errorf("vm2 after rollback: %q", got)
		}
		var logs strings.Builder
		if err := b.Logs(ctx, "vm2", backend.LogOptions{Lines: 400}, &logs); err != nil || !strings.Contains(logs.String(), "devvm-guest: ready") {
			t.Errorf("logs vm2: %v\n%s", err, logs.String())
		}
	})

	t.Run("destroy", func(t *testing.T) {
		if err := b.Destroy(ctx, []string{"vm1"}, backend.DestroyOptions{GC: true}); err == nil || !strings.Contains(err.Error(), "--yes") {
			t.Errorf("destroy of a running VM without a terminal or --yes: %v", err)
		}
		if err := b.Destroy(ctx, []string{"vm1"}, backend.DestroyOptions{GC: true, Yes: true}); err != nil {
			t.Fatalf("destroy: %v", err)
		}
		out := w.ui.Take()
		if !strings.Contains(out, "$ systemctl stop microvm@vm1") || !strings.Contains(out, "$ rm -rf "+filepath.Join(w.root, "var/lib/microvms/vm1")) || !strings.Contains(out, "$ nix-collect-garbage") || !strings.Contains(out, "garbage collection freed") {
			t.Errorf("destroy output:\n%s", out)
		}
		if _, err := os.Stat(filepath.Join(w.root, "var/lib/microvms/vm1")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("vm1's directory survived: %v", err)
		}
		ents, _ := os.ReadDir(filepath.Join(w.root, "nix/var/nix/gcroots/microvm"))
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), "vm1") {
				t.Errorf("gcroot %s survived", e.Name())
			}
		}
		if s := statusOf(t, b, "vm1")["vm1"]; s.State != backend.Stopped {
			t.Errorf("vm1 after destroy: %+v", s)
		}
	})

	t.Run("a skipped start is a failure", func(t *testing.T) {
		err := b.Up(ctx, []string{"vm3"}, backend.UpOptions{Timeout: 30 * time.Second})
		if err == nil || !strings.Contains(err.Error(), "skipped") || !strings.Contains(err.Error(), "ConditionPathExists") {
			t.Fatalf("up vm3: %v", err)
		}
		t.Logf("error as the user sees it: %v", err)
	})

	t.Run("the hypervisor refuses the key", func(t *testing.T) {
		other := filepath.Join(w.tmp, "other_id")
		writeKey(t, other)
		dir := filepath.Join(w.tmp, "other")
		os.MkdirAll(dir, 0o755)
		text := strings.Replace(vmf, filepath.Join(w.tmp, "hv_id"), other, 1)
		os.WriteFile(filepath.Join(dir, "Vmfile"), []byte(text), 0o644)
		w.hostEnv.DataDir = filepath.Join(w.tmp, "otherdata") // devvm's own key is not authorized either
		defer func() { w.hostEnv.DataDir = w.dataDir }()
		t.Setenv("SSH_AUTH_SOCK", "")
		_, err := w.open(dir).Status(ctx, nil)
		if !errors.Is(err, sshx.ErrAuthRefused) {
			t.Fatalf("status with a refused key: %v", err)
		}
		t.Logf("error as the user sees it: %v", err)
	})

	t.Run("copy the flake instead of git pull", func(t *testing.T) {
		dir := filepath.Join(w.tmp, "copy")
		dst := filepath.Join(w.tmp, "hvcopy")
		w.writeFlake(dir)
		text := strings.Replace(vmf, "checkout = "+fmt.Sprintf("%q", w.hvCheck), fmt.Sprintf("checkout = %q\nsync = \"copy\"", dst), 1)
		os.WriteFile(filepath.Join(dir, "Vmfile"), []byte(text), 0o644)
		if err := w.open(dir).Build(ctx, backend.BuildOptions{}); err != nil {
			t.Fatalf("build with sync = copy: %v", err)
		}
		out := w.ui.Take()
		if !strings.Contains(out, "$ mkdir -p "+dst+" && tar -x -C "+dst) || !strings.Contains(out, "$ nix --extra-experimental-features 'nix-command flakes' build --no-link --print-out-paths '"+dst+"#nixosConfigurations.vm1.config.microvm.declaredRunner'") {
			t.Errorf("build output:\n%s", out)
		}
		if _, err := os.Stat(filepath.Join(dst, "devvm-standin.json")); err != nil {
			t.Errorf("the flake was not copied: %v", err)
		}
	})
}

// shareMarker is in the command line of the share servers of a machine.
func shareMarker(checkout, name string) string {
	return state.New(checkout, name, state.Dirs{}).Marker() + "-share-"
}

// processesWith returns the pids of the processes whose command line
// contains s (the marker of devvm's share servers).
func processesWith(s string) []string {
	var pids []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), s) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}
