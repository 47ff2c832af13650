//go:build guixtier

package guixtier

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/devvm/devvm/templates"
)

// inside is where a project directory appears inside the chroot: a fixed
// path keeps the recorded outputs free of temporary directory names.
const inside = "/work/proj"

// config is the config file's name, as `devvm init` writes it.
const config = "dev-vm.scm"

// guixV150 is the commit of the v1.5.0 tag of the guix channel.
const guixV150 = "230aa373f315f247852ee07dff34146e9b480aec"

// cmdTimeout bounds one chroot.sh call; an evaluation takes seconds, so
// hitting it means guix hangs (e.g. waiting for the network).
const cmdTimeout = 4 * time.Minute

// need skips the tier with a reason, or fails it when CI=true.
func need(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: the guix tier must run, so this is a failure)", reason)
	}
	t.Skip(reason)
}

type result struct {
	cmd    []string // the command run inside the chroot
	netns  bool     // run without network (chroot.sh run -n)
	stdout string
	stderr string
	code   int
}

func (r result) String() string {
	return fmt.Sprintf("%s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.cmd, " "), r.code, r.stdout, r.stderr)
}

// chrootSh runs tests/guix/chroot.sh with args.
func chrootSh(t *testing.T, args ...string) result {
	t.Helper()
	script, err := filepath.Abs("chroot.sh")
	if err != nil {
		t.Fatal(err)
	}
	// Not t.Context(): that is canceled before the cleanup runs `down`.
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	c := exec.CommandContext(ctx, script, args...)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Kill the whole group: chroot.sh, chroot and guix. `chroot.sh down`
	// in the cleanup undoes any bind mount left behind.
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	c.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	err = c.Run()
	r := result{cmd: args, stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("chroot.sh %s did not finish within %s; output so far:\n%s", strings.Join(args, " "), cmdTimeout, r)
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("cannot run %s: %v", script, err)
	}
	return r
}

// guix runs CMD inside the chroot with the project directory dir mounted at
// inside; opts are chroot.sh run options (-n, -C DIR).
func guix(t *testing.T, dir string, opts []string, cmd ...string) result {
	t.Helper()
	args := append([]string{"run", "-b", dir + ":" + inside}, opts...)
	args = append(append(args, "--"), cmd...)
	start := time.Now()
	r := chrootSh(t, args...)
	r.cmd, r.netns = cmd, slices.Contains(opts, "-n")
	t.Logf("%s: exit %d in %.1f s", strings.Join(cmd, " "), r.code, time.Since(start).Seconds())
	return r
}

// recorder writes real guix outputs for the launcher's unit tests when
// DEVVM_GUIX_RECORD names a directory.
type recorder struct {
	dir   string
	index []string
}

func (rec *recorder) save(t *testing.T, name string, r result) {
	t.Helper()
	if rec.dir == "" {
		return
	}
	base := fmt.Sprintf("%s.exit%d", name, r.code)
	for ext, text := range map[string]string{"stdout": r.stdout, "stderr": r.stderr} {
		if text == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(rec.dir, base+"."+ext), []byte(text), 0o644); err != nil {
			t.Fatalf("recording %s: %v", name, err)
		}
	}
	line := fmt.Sprintf("%s.{stdout,stderr}: exit %d: %s", base, r.code, strings.Join(r.cmd, " "))
	if r.netns {
		line += " (in an empty network namespace: no interface, no DNS)"
	}
	rec.index = append(rec.index, line)
}

func (rec *recorder) writeIndex(version string) error {
	if rec.dir == "" {
		return nil
	}
	head := "Real outputs of " + version + " (Debian package, Debian sid chroot), recorded by\n" +
		"`DEVVM_GUIX_RECORD=<this dir> go test -tags guixtier -count=1 ./tests/guix/` (tests/guix/guix_test.go).\n" +
		"File names: <case>.exit<status>.<stream>; only non-empty streams are written; files are kept as printed.\n" +
		"The project directory is mounted at " + inside + "; the config is " + inside + "/" + config + ".\n\n"
	return os.WriteFile(filepath.Join(rec.dir, "README"), []byte(head+strings.Join(rec.index, "\n")+"\n"), 0o644)
}

// authorizedKey returns an authorized_keys line for a fresh ed25519 key.
func authorizedKey(t *testing.T) []byte {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return ssh.MarshalAuthorizedKey(sp)
}

// projData is a checkout as devvm builds it: the template's plain OS file
// (osFile) and devvm's wrapper around it (config), from the Vmfile's
// contract. Paths are relative to the checkout.
type projData struct {
	templates.Data
	Shares         []templates.Share
	Manifest       string // the packages file ([guix] manifest), or ""
	PackageFile    string // same, for a guix.scm
	AuthorizedKeys string
}

// osFile is the template's output: a plain operating-system file.
const osFile = "os.scm"

// baseData is what `devvm init` and a default Vmfile give a checkout named qbuf.
func baseData() projData {
	return projData{
		Data:           templates.Data{HostName: "qbuf", Packages: templates.DefaultPackages},
		Shares:         []templates.Share{{Tag: "share0", Guest: "/mnt/qbuf"}},
		AuthorizedKeys: ".devvm/authorized_keys",
	}
}

// project writes a checkout the way devvm does: the rendered template, the
// wrapper as the config guix gets, the authorized keys (unless key is nil)
// and manifest.scm (unless empty).
func project(t *testing.T, tmpl string, d projData, manifest string, key []byte) string {
	t.Helper()
	dir := t.TempDir()
	src, err := templates.RenderGuix(tmpl, d.Data)
	if err != nil {
		t.Fatal(err)
	}
	w := templates.Wrapper{ProjectConfig: inside + "/" + osFile, User: "dev", UID: 1000,
		AuthorizedKeysFile: inside + "/" + d.AuthorizedKeys, Shares: d.Shares}
	if pkgs := d.Manifest + d.PackageFile; pkgs != "" {
		w.Packages = inside + "/" + pkgs
	}
	wrapper, err := templates.RenderWrapper(w)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{osFile: src, config: wrapper}
	if key != nil {
		files[d.AuthorizedKeys] = key
	}
	if manifest != "" {
		files[d.Manifest] = []byte(manifest)
	}
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// drv returns the .drv path `guix system vm -d` printed, failing the test
// unless the command succeeded.
func drv(t *testing.T, r result) string {
	t.Helper()
	out := strings.TrimSpace(r.stdout)
	if r.code != 0 || !strings.HasPrefix(out, "/") || !strings.HasSuffix(out, ".drv") || strings.Contains(out, "\n") {
		t.Fatalf("want one .drv path on stdout and exit 0, got %s", r)
	}
	return out
}

func wantFailure(t *testing.T, r result, code int, texts ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("want exit %d, got %s", code, r)
		return
	}
	for _, s := range texts {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr lacks %q; got %s", s, r)
		}
	}
}

// wantInStore checks that a store item whose name ends in suffix holds text.
func wantInStore(t *testing.T, store, suffix, text string) {
	t.Helper()
	items, err := filepath.Glob(filepath.Join(store, "*"+suffix))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range items {
		if b, err := os.ReadFile(p); err == nil && string(b) == text {
			return
		}
	}
	t.Errorf("no store item *%s holds %q (candidates: %v)", suffix, text, items)
}

const manifestOK = `(specifications->manifest '("gcc-toolchain" "cmake" "git"))` + "\n"

func TestGuix(t *testing.T) {
	if os.Geteuid() != 0 {
		need(t, "the guix tier needs root (chroot, mounts, guix-daemon); run it as root")
	}
	up := chrootSh(t, "up")
	switch up.code {
	case 0:
	case 2:
		need(t, strings.TrimSpace(up.stderr))
	default:
		t.Fatalf("chroot.sh up failed: %s", up)
	}
	t.Cleanup(func() {
		if r := chrootSh(t, "down"); r.code != 0 {
			t.Errorf("chroot.sh down: %s", r)
		}
	})
	rec := &recorder{dir: os.Getenv("DEVVM_GUIX_RECORD")}
	if rec.dir != "" {
		if err := os.MkdirAll(rec.dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	key := authorizedKey(t)
	empty := t.TempDir()
	root := strings.TrimSpace(chrootSh(t, "path").stdout)
	store := filepath.Join(root, "gnu", "store")

	version := guix(t, empty, nil, "guix", "--version")
	if version.code != 0 || !strings.HasPrefix(version.stdout, "guix (GNU Guix) ") {
		t.Fatalf("guix --version: %s", version)
	}
	rec.save(t, "version", version)
	t.Cleanup(func() {
		if err := rec.writeIndex(strings.SplitN(version.stdout, "\n", 2)[0]); err != nil {
			t.Errorf("writing the index of recorded outputs: %v", err)
		}
	})

	t.Run("templates", func(t *testing.T) {
		twoShares := baseData()
		twoShares.Shares = []templates.Share{
			{Tag: "share0", Guest: "/mnt/qbuf"},
			{Tag: "share1", Guest: "/mnt/ref", ReadOnly: true},
		}
		withManifest := baseData()
		withManifest.Packages, withManifest.Manifest = nil, "manifest.scm"
		for _, name := range templates.GuixNames() {
			t.Run(name+"/packages", func(t *testing.T) {
				dir := project(t, name, baseData(), "", key)
				r := guix(t, dir, nil, "guix", "system", "vm", "-d", inside+"/"+config)
				drv(t, r)
				if name == templates.DefaultGuix {
					rec.save(t, "success", r)
				}
				// Lowering put the config's files into the store: the
				// keys (local-file, relative to the config, not to guix's
				// cwd /) and the sudoers plain-file.
				wantInStore(t, store, "-devvm-authorized-keys", string(key))
				// The wrapper's sudoers: the OS's plus devvm's user.
				wantInStore(t, store, "-sudoers", "root ALL=(ALL) ALL\n%wheel ALL=(ALL) ALL\ndev ALL=(ALL) NOPASSWD: ALL\n")
			})
			t.Run(name+"/manifest", func(t *testing.T) {
				dir := project(t, name, withManifest, manifestOK, key)
				// From / and from the project directory: the config's
				// relative paths must not depend on guix's cwd.
				fromRoot := drv(t, guix(t, dir, nil, "guix", "system", "vm", "-d", inside+"/"+config))
				fromDir := drv(t, guix(t, dir, []string{"-C", inside}, "guix", "system", "vm", "-d", config))
				if fromRoot != fromDir {
					t.Errorf("the derivation depends on the cwd: %s from /, %s from %s", fromRoot, fromDir, inside)
				}
			})
			if name == templates.DefaultGuix {
				t.Run(name+"/guix.scm", func(t *testing.T) {
					// A project with a package definition and no manifest:
					// the VM gets the package's development inputs.
					d := baseData()
					d.Packages, d.PackageFile = nil, "guix.scm"
					dir := project(t, name, d, "", key)
					pkg := "(use-modules (gnu packages base))\nhello\n"
					if err := os.WriteFile(filepath.Join(dir, "guix.scm"), []byte(pkg), 0o644); err != nil {
						t.Fatal(err)
					}
					drv(t, guix(t, dir, nil, "guix", "system", "vm", "-d", inside+"/"+config))
				})
			}
			t.Run(name+"/two-shares", func(t *testing.T) {
				dir := project(t, name, twoShares, "", key)
				src, err := os.ReadFile(filepath.Join(dir, config))
				if err != nil {
					t.Fatal(err)
				}
				if n := strings.Count(string(src), `(list "share1" "/mnt/ref" #t)`); n != 1 {
					t.Errorf("rendered wrapper has %d read-only share1, want 1", n)
				}
				drv(t, guix(t, dir, nil, "guix", "system", "vm", "-d", inside+"/"+config))
				// The Shepherd graph shows the contract with devvm: a
				// `networking' provider, sshd and one mount per share.
				g := guix(t, dir, nil, "guix", "system", "shepherd-graph", inside+"/"+config)
				if g.code != 0 {
					t.Fatalf("shepherd-graph: %s", g)
				}
				for _, svc := range []string{`"networking"`, `"ssh-daemon ssh sshd"`, `"file-system-/mnt/qbuf"`, `"file-system-/mnt/ref"`} {
					if !strings.Contains(g.stdout, svc) {
						t.Errorf("the Shepherd graph lacks the service %s:\n%s", svc, g.stdout)
					}
				}
			})
		}
	})

	t.Run("unknown-package/packages", func(t *testing.T) {
		d := baseData()
		d.Packages = append(slices.Clone(templates.DefaultPackages), "gcc-toolchian")
		dir := project(t, templates.DefaultGuix, d, "", key)
		r := guix(t, dir, nil, "guix", "system", "vm", "-d", inside+"/"+config)
		wantFailure(t, r, 1, "guix system: error: gcc-toolchian: unknown package",
			"guix system: error: failed to load '"+inside+"/"+config+"'")
		rec.save(t, "packages.unknown-package", r)
	})

	t.Run("unknown-package/manifest", func(t *testing.T) {
		d := baseData()
		d.Packages, d.Manifest = nil, "manifest.scm"
		dir := project(t, templates.DefaultGuix, d, `(specifications->manifest '("gcc-toolchain" "cmakee"))`+"\n", key)
		// Run from /: the manifest is found next to the config.
		r := guix(t, dir, nil, "guix", "system", "vm", "-d", inside+"/"+config)
		wantFailure(t, r, 1, "guix system: error: cmakee: unknown package",
			"guix system: error: failed to load '"+inside+"/"+config+"'")
		rec.save(t, "manifest.unknown-package", r)
	})

	t.Run("share-twice", func(t *testing.T) {
		// Why devvm never passes --share for the config's own mount points.
		dir := project(t, templates.DefaultGuix, baseData(), "", key)
		r := guix(t, dir, nil, "guix", "system", "vm", "-d", "--share="+inside+"=/mnt/qbuf", inside+"/"+config)
		wantFailure(t, r, 1, "guix system: error: service 'file-system-/mnt/qbuf' provided more than once")
		rec.save(t, "share-twice", r)
	})

	t.Run("missing-authorized-keys", func(t *testing.T) {
		// devvm must write the keys file before it evaluates the config.
		dir := project(t, templates.DefaultGuix, baseData(), "", nil)
		r := guix(t, dir, nil, "guix", "system", "vm", "-d", inside+"/"+config)
		wantFailure(t, r, 1, "authorized_keys")
		rec.save(t, "missing-authorized-keys", r)
	})

	t.Run("missing-config", func(t *testing.T) {
		r := guix(t, empty, nil, "guix", "system", "vm", "-d", inside+"/"+config)
		wantFailure(t, r, 1, "guix system: error: failed to load '"+inside+"/"+config+"': No such file or directory")
		rec.save(t, "missing-config", r)
	})

	t.Run("config-error/syntax", func(t *testing.T) {
		dir := t.TempDir()
		src := "(use-modules (gnu))\n(operating-system\n  (host-name \"qbuf\")\n"
		if err := os.WriteFile(filepath.Join(dir, config), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		r := guix(t, dir, nil, "guix", "system", "vm", "-d", inside+"/"+config)
		wantFailure(t, r, 1, inside+"/"+config+":4:1: missing closing parenthesis")
		rec.save(t, "config-error.syntax", r)
	})

	t.Run("config-error/unbound-variable", func(t *testing.T) {
		dir := project(t, templates.DefaultGuix, baseData(), "", key)
		p := filepath.Join(dir, osFile)
		src, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		bad := strings.Replace(string(src), "(list %qemu-static-networking)", "(list %qemu-static-networkin)", 1)
		if bad == string(src) {
			t.Fatalf("%s", "the default template no longer uses '(list %qemu-static-networking)': pick another name to misspell")
		}
		if err := os.WriteFile(p, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		r := guix(t, dir, nil, "guix", "system", "vm", "-d", inside+"/"+config)
		wantFailure(t, r, 1, "error: %qemu-static-networkin: unbound variable")
		rec.save(t, "config-error.unbound-variable", r)
	})

	t.Run("config-error/unbound-top-level", func(t *testing.T) {
		dir := project(t, templates.DefaultGuix, baseData(), "", key)
		p := filepath.Join(dir, osFile)
		src, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		bad := strings.Replace(string(src), "(specifications->packages", "(specifications->packagez", 1)
		if bad == string(src) {
			t.Fatal("the default template no longer calls specifications->packages; pick another name to misspell")
		}
		if err := os.WriteFile(p, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		r := guix(t, dir, nil, "guix", "system", "vm", "-d", inside+"/"+config)
		wantFailure(t, r, 1, "specifications->packagez")
		rec.save(t, "config-error.unbound-top-level", r)
	})

	t.Run("describe", func(t *testing.T) {
		r := guix(t, empty, nil, "guix", "describe", "-f", "channels")
		rec.save(t, "describe-channels", r)
		// The Debian package knows no commit: its output cannot pin a
		// channels.scm.
		if r.code == 0 && strings.Contains(r.stdout, "(commit ") {
			t.Errorf("guix describe now reports a commit; devvm could pin channels.scm from it: %s", r)
		}
	})

	t.Run("offline", func(t *testing.T) {
		dir := project(t, templates.DefaultGuix, baseData(), "", key)
		channels := `(list (channel
       (name 'guix)
       (url "https://git.guix.gnu.org/guix.git")
       (branch "master")
       (commit "` + guixV150 + `")
       (introduction
        (make-channel-introduction
         "9edb3f66fd807b096b48283debdcddccfea34bad"
         (openpgp-fingerprint
          "BBB0 2DDF 2CEA F6A8 0D1D  E643 A2A0 6DF2 A33A 54FA")))))
`
		if err := os.WriteFile(filepath.Join(dir, "channels.scm"), []byte(channels), 0o644); err != nil {
			t.Fatal(err)
		}
		// -n: own network namespace, so this never reaches the network.
		r := guix(t, dir, []string{"-n"}, "guix", "time-machine", "-C", inside+"/channels.scm",
			"--", "system", "vm", "-d", inside+"/"+config)
		wantFailure(t, r, 1, "getaddrinfo")
		rec.save(t, "offline", r)
	})

	t.Run("no-daemon", func(t *testing.T) {
		if r := chrootSh(t, "daemon-stop"); r.code != 0 {
			t.Fatalf("stopping guix-daemon: %s", r)
		}
		defer func() {
			if r := chrootSh(t, "daemon-start"); r.code != 0 {
				t.Errorf("restarting guix-daemon: %s", r)
			}
		}()
		dir := project(t, templates.DefaultGuix, baseData(), "", key)
		r := guix(t, dir, nil, "guix", "system", "vm", "-d", inside+"/"+config)
		wantFailure(t, r, 1, "failed to connect to `/var/guix/daemon-socket/socket'")
		rec.save(t, "no-daemon", r)

		// A daemon that died without cleaning up leaves its socket.
		l, err := net.Listen("unix", filepath.Join(root, "var/guix/daemon-socket/socket"))
		if err != nil {
			t.Fatalf("creating a stale daemon socket: %v", err)
		}
		l.(*net.UnixListener).SetUnlinkOnClose(false)
		l.Close()
		r = guix(t, dir, nil, "guix", "system", "vm", "-d", inside+"/"+config)
		wantFailure(t, r, 1, "failed to connect to `/var/guix/daemon-socket/socket': Connection refused")
		rec.save(t, "no-daemon.stale-socket", r)
	})
}
