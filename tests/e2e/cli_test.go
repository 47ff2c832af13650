//go:build e2e

package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCLI checks what a user of ssh, Lima and Vagrant relies on, against
// the real guest: the working directory of `devvm ssh`, a guest command
// with its own --, `devvm cp` both ways, and the bash completion.
func TestCLI(t *testing.T) {
	w := newWorld(t, "clivm")
	w.setVmfile(`memory = "512M"`, `cpus = 1`)
	w.ok("up")
	name := vmName(w.checkout)
	guest := "/mnt/" + name

	// in runs devvm with the host's working directory dir.
	in := func(dir string, args ...string) result {
		t.Helper()
		c := w.cmd(args...)
		c.Dir = dir
		var o, e bytes.Buffer
		c.Stdout, c.Stderr = &o, &e
		err := c.Run()
		r := result{stdout: o.String(), stderr: e.String()}
		if ee, ok := err.(*exec.ExitError); ok {
			r.code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return r
	}

	t.Run("Workdir", func(t *testing.T) {
		sub := filepath.Join(w.checkout, "src", "deep dir")
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			dir  string
			args []string
			want string
		}{
			{w.checkout, []string{"ssh", "--", "pwd"}, guest},
			{sub, []string{"ssh", "--", "pwd"}, guest + "/src/deep dir"},
			{sub, []string{"ssh", name, "--", "pwd"}, guest + "/src/deep dir"},
			{sub, []string{"ssh", "--workdir", "/tmp", "--", "pwd"}, "/tmp"},
			{w.checkout, []string{"ssh", name, "--workdir", "/", "--", "pwd"}, "/"}, // a flag after the machine
		} {
			r := in(c.dir, c.args...)
			if r.code != 0 || strings.TrimSpace(r.stdout) != c.want {
				t.Errorf("in %s: devvm %s: exit %d, %q (stderr %q), want %q", c.dir, strings.Join(c.args, " "), r.code, r.stdout, r.stderr, c.want)
			}
		}
		// A relative path given to a command is relative to that directory.
		os.WriteFile(filepath.Join(sub, "here.txt"), []byte("here\n"), 0o644)
		if r := in(sub, "ssh", "--", "cat", "here.txt"); r.stdout != "here\n" {
			t.Errorf("cat here.txt from %s: %q %q", sub, r.stdout, r.stderr)
		}
	})

	t.Run("OwnDashDash", func(t *testing.T) {
		r := w.run("ssh", "--", "sh", "-c", `for a; do printf '[%s]' "$a"; done`, "sh", "log", "--", "README.md", "--watch")
		if r.code != 0 || r.stdout != "[log][--][README.md][--watch]" {
			t.Errorf("a command with its own --: exit %d, %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		// Without --, nothing reaches the guest: the order is shown.
		if r := w.run("ssh", name, "ls", "-la"); r.code != 2 || !strings.Contains(r.stderr, "devvm ssh "+name+" -- ls -la") {
			t.Errorf("ssh NAME ls -la: exit %d, %q", r.code, r.stderr)
		}
	})

	t.Run("Copy", func(t *testing.T) {
		host := t.TempDir()
		big := filepath.Join(host, "big.bin")
		data := make([]byte, 10<<20)
		rand.Read(data)
		sum := sha256.Sum256(data)
		os.WriteFile(big, data, 0o644)
		start := time.Now()
		w.ok("cp", big, ":/tmp/")
		up := time.Since(start)
		if r := w.ok("ssh", "--", "sha256sum", "/tmp/big.bin"); !strings.HasPrefix(r.stdout, hex.EncodeToString(sum[:])) {
			t.Fatalf("the guest's copy has checksum %q, want %x", r.stdout, sum)
		}
		back := filepath.Join(host, "back.bin")
		start = time.Now()
		w.ok("cp", name+":/tmp/big.bin", back)
		down := time.Since(start)
		if got, err := os.ReadFile(back); err != nil || sha256.Sum256(got) != sum {
			t.Fatalf("the downloaded copy differs (%v)", err)
		}
		t.Logf("10 MiB over devvm cp under TCG: upload %s, download %s", up.Round(time.Millisecond), down.Round(time.Millisecond))

		// A tree with nested directories, an empty one, an executable and a link.
		tree := filepath.Join(host, "tree")
		for p, text := range map[string]string{"a.txt": "alpha\n", "sub/b.txt": "beta\n", "sub/deeper/c.txt": "gamma\n", "run.sh": "#!/bin/sh\necho ran\n"} {
			os.MkdirAll(filepath.Dir(filepath.Join(tree, p)), 0o755)
			os.WriteFile(filepath.Join(tree, p), []byte(text), 0o644)
		}
		os.Chmod(filepath.Join(tree, "run.sh"), 0o755)
		os.Mkdir(filepath.Join(tree, "empty"), 0o755)
		os.Symlink("sub/b.txt", filepath.Join(tree, "link"))
		w.ok("cp", tree, ":/tmp/t")
		r := w.ok("ssh", "--", "sh", "-c", "cd /tmp/t && cat a.txt sub/b.txt sub/deeper/c.txt link && ./run.sh && test -d empty && readlink link")
		if r.stdout != "alpha\nbeta\ngamma\nbeta\nran\nsub/b.txt\n" {
			t.Errorf("the tree in the guest: %q (stderr %q)", r.stdout, r.stderr)
		}
		w.ok("cp", ":/tmp/t", filepath.Join(host, "tree-back"))
		for p, want := range map[string]string{"a.txt": "alpha\n", "sub/deeper/c.txt": "gamma\n", "link": "beta\n"} {
			if got, err := os.ReadFile(filepath.Join(host, "tree-back", p)); err != nil || string(got) != want {
				t.Errorf("tree-back/%s: %q %v", p, got, err)
			}
		}
		if l, err := os.Readlink(filepath.Join(host, "tree-back", "link")); err != nil || l != "sub/b.txt" {
			t.Errorf("the link came back as %q %v", l, err)
		}
		if st, err := os.Stat(filepath.Join(host, "tree-back", "run.sh")); err != nil || st.Mode().Perm() != 0o755 {
			t.Errorf("run.sh came back as %v %v", st, err)
		}
		if st, err := os.Stat(filepath.Join(host, "tree-back", "empty")); err != nil || !st.IsDir() {
			t.Errorf("the empty directory did not come back: %v", err)
		}
	})

	t.Run("CompletionBash", func(t *testing.T) {
		script := w.ok("completion", "bash").stdout
		sp := filepath.Join(t.TempDir(), "devvm.bash")
		os.WriteFile(sp, []byte(script), 0o644)
		line := `source "$1" && complete -p devvm && COMP_WORDS=(devvm ss) COMP_CWORD=1 && _devvm && echo "[${COMPREPLY[*]}]" && COMP_WORDS=(devvm ssh "") COMP_CWORD=2 && _devvm && echo "[${COMPREPLY[*]}]"`
		c := exec.Command("bash", "--norc", "-c", line, "bash", sp)
		c.Dir = w.checkout
		c.Env = append(w.env, "PATH="+filepath.Dir(devvmBin)+":"+os.Getenv("PATH"))
		out, err := c.CombinedOutput()
		want := "complete -o default -F _devvm devvm\n[ssh ssh-config]\n[" + name + "]\n"
		if err != nil || string(out) != want {
			t.Errorf("bash with the completion: %v\n%s\nwant\n%s", err, out, want)
		}
	})
}
