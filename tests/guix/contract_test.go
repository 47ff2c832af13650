//go:build guixtier

package guixtier

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	devguix "github.com/devvm/devvm/launcher/guix"
	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/templates"
)

// The contract tier: every pattern of a real Guix project goes through
// devvm's own build path — devguix.WriteWrapper renders the wrapper, and
// devguix.Runner.Derivation runs `guix time-machine -C … -- system vm [-L …] -d
// WRAPPER` — and the evaluated OS is then inspected with `guix repl`
// (testdata/inspect.scm). The fixtures are this file's own, written after
// real projects' patterns (qbuf's dev-vm.scm, Guix's bare-bones.tmpl, the
// manual's .guix/modules layout); no third-party file is copied.
//
// The chroot has no network, so `guix time-machine` cannot fetch a pin. The
// guix the Runner calls is a host script (timeMachine) that checks the
// channels file like time-machine does first (it must exist and parse),
// records time-machine's options, and runs the command after `--` with the
// chroot's guix 1.5.0, which is the commit devvm's default pin names.

// fixtureRoot is bind-mounted at the same path inside the chroot, so the
// wrapper's absolute paths mean the same on both sides.
type world struct {
	t      *testing.T
	root   string // fixtures and devvm state, same path inside the chroot
	shim   string // the guix the Runner runs
	tmLog  string // time-machine options, one invocation per line
	key    []byte // devvm's public key line
	runner *devguix.Runner
}

func newWorld(t *testing.T, key []byte) *world {
	root, err := os.MkdirTemp("/tmp", "devvm-guix-contract-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	script, err := filepath.Abs("chroot.sh")
	if err != nil {
		t.Fatal(err)
	}
	// One bind mount for the whole test: concurrent `chroot.sh run -b` of
	// one directory would unmount it under each other.
	at := filepath.Join(strings.TrimSpace(chrootSh(t, "path").stdout), root)
	if err := os.MkdirAll(at, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "--bind", root, at).CombinedOutput(); err != nil {
		t.Fatalf("bind-mounting %s into the chroot: %v %s", root, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", at).CombinedOutput(); err != nil {
			t.Errorf("unmounting %s: %v %s", at, err, out)
		}
	})
	w := &world{t: t, root: root, shim: filepath.Join(root, "bin", "guix"), tmLog: filepath.Join(root, "time-machine.log"), key: key}
	shim := `#!/bin/bash
# Stands in for the time-machine step only (no network in the chroot).
set -u
[[ $1 == time-machine ]] || { echo "devvm guix tier: want time-machine, got $*" >&2; exit 2; }
shift
opts=()
while (($#)); do
	case $1 in
	--) shift; break ;;
	-C) channels=$2; opts+=("$1" "$2"); shift 2 ;;
	*) opts+=("$1"); shift ;;
	esac
done
[[ -f ${channels:-} ]] || { echo "guix time-machine: error: failed to load '${channels:-}': No such file or directory" >&2; exit 1; }
echo "${opts[*]}" >>` + w.tmLog + `
# Real guix reads the channels file first: a file that does not evaluate to
# channels fails here as it would there.
` + script + ` run -C "$PWD" -- guix repl -- /dev/stdin <<EOF || exit 1
(use-modules (guix channels) (guix ui) (srfi srfi-1))
(unless (every channel? (load* "$channels" (make-user-module '((guix channels)))))
  (error "not a list of channels" "$channels"))
EOF
exec ` + script + ` run -C "$PWD" -- guix "$@"
`
	if err := os.MkdirAll(filepath.Dir(w.shim), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(w.shim, []byte(shim), 0o755); err != nil {
		t.Fatal(err)
	}
	w.runner = &devguix.Runner{Env: hostenv.FromOS(), Guix: w.shim, Timeout: cmdTimeout}
	return w
}

// project writes a fixture checkout and returns its directory.
func (w *world) project(name string, files map[string]string) string {
	dir := filepath.Join(w.root, name)
	for p, text := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			w.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(text), 0o644); err != nil {
			w.t.Fatal(err)
		}
	}
	if _, ok := files["channels.scm"]; !ok {
		if err := os.WriteFile(filepath.Join(dir, "channels.scm"), channelsV150, 0o644); err != nil {
			w.t.Fatal(err)
		}
	}
	return dir
}

var channelsV150 = []byte(`(list (channel
       (name 'guix)
       (url "https://git.guix.gnu.org/guix.git")
       (branch "master")
       (commit "` + guixV150 + `")
       (introduction
        (make-channel-introduction
         "9edb3f66fd807b096b48283debdcddccfea34bad"
         (openpgp-fingerprint
          "BBB0 2DDF 2CEA F6A8 0D1D  E643 A2A0 6DF2 A33A 54FA")))))
`)

// build is one devvm build of a fixture, evaluated only.
type build struct {
	dir      string
	contract devguix.Contract
	req      devguix.Request
}

// contractFor is what devvm derives from a default Vmfile for dir: user dev,
// the checkout shared at /mnt/<name> as share0, the keys in devvm's state.
// The state directory is named after the checkout, or after stateName.
func (w *world) contractFor(dir, config string, stateName ...string) build {
	state := filepath.Join(w.root, "state", filepath.Base(dir))
	if len(stateName) > 0 {
		state = filepath.Join(w.root, "state", stateName[0])
	}
	if err := os.MkdirAll(state, 0o755); err != nil {
		w.t.Fatal(err)
	}
	keys := filepath.Join(state, "authorized_keys")
	if err := os.WriteFile(keys, w.key, 0o644); err != nil {
		w.t.Fatal(err)
	}
	c := devguix.Contract{ProjectConfig: filepath.Join(dir, config), User: "dev", UID: 1000, AuthorizedKeysFile: keys,
		Shares: []devguix.Share{{Tag: "share0", Guest: "/mnt/" + filepath.Base(dir)}}}
	return build{dir: dir, contract: c, req: devguix.Request{Dir: dir, Channels: filepath.Join(dir, "channels.scm"),
		Log: filepath.Join(state, "build.log")}}
}

// evaluate writes the wrapper and runs devvm's derivation step; it returns
// the .drv, or the error.
func (w *world) evaluate(b *build) (string, error) {
	state := filepath.Dir(b.req.Log)
	wrapper, err := devguix.WriteWrapper(state, b.contract)
	if err != nil {
		w.t.Fatal(err)
	}
	b.req.Config = wrapper
	start := time.Now()
	res, err := w.runner.Derivation(context.Background(), b.req)
	w.t.Logf("%s: devvm evaluation in %.1f s", filepath.Base(b.dir), time.Since(start).Seconds())
	if err != nil {
		return "", err
	}
	return res.RunVM, nil
}

// facts are the lines inspect.scm printed for the evaluated wrapper.
type facts []string

func (w *world) inspect(b build) facts {
	w.t.Helper()
	inspect, err := filepath.Abs("testdata/inspect.scm")
	if err != nil {
		w.t.Fatal(err)
	}
	args := []string{"run", "-b", filepath.Dir(inspect) + ":/devvm-testdata", "-C", b.dir, "--", "guix", "repl"}
	for _, d := range b.req.LoadPath {
		args = append(args, "-L", d)
	}
	args = append(args, "--", "/devvm-testdata/inspect.scm", b.req.Config)
	start := time.Now()
	r := chrootSh(w.t, args...)
	w.t.Logf("%s: guix repl inspection in %.1f s", filepath.Base(b.dir), time.Since(start).Seconds())
	if r.code != 0 {
		w.t.Fatalf("inspecting %s: %s", b.req.Config, r)
	}
	var out facts
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// has reports whether a fact line starts with prefix.
func (f facts) has(prefix string) bool {
	return slices.ContainsFunc(f, func(l string) bool { return strings.HasPrefix(l, prefix) })
}

func (f facts) count(prefix string) int {
	n := 0
	for _, l := range f {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

func (f facts) want(t *testing.T, prefixes ...string) {
	t.Helper()
	for _, p := range prefixes {
		if !f.has(p) {
			t.Errorf("the evaluated OS lacks %s\nfacts:\n%s", p, f.brief())
		}
	}
}

func (f facts) wantNot(t *testing.T, prefixes ...string) {
	t.Helper()
	for _, p := range prefixes {
		if f.has(p) {
			t.Errorf("the evaluated OS has %s\nfacts:\n%s", p, f.brief())
		}
	}
}

// brief drops the long Shepherd lines.
func (f facts) brief() string {
	var b strings.Builder
	for _, l := range f {
		if len(l) > 300 {
			l = l[:300] + "…"
		}
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

// contract checks what devvm depends on in every evaluated OS: its key
// for its user, sshd with key login on port 22 and TCP forwarding, the
// keep-alive lines first, sudo, the serial console, one networking
// provider that sshd waits for, and its 9p share.
func (f facts) contract(t *testing.T, key []byte, user, tag, guest string) {
	t.Helper()
	f.want(t,
		fmt.Sprintf("(authorized-key %q %q)", user, string(key)),
		"(sshd public-key-authentication #t)",
		"(sshd allow-tcp-forwarding #t)",
		"(sshd port 22)",
		`(sshd extra-content "ClientAliveInterval 15\nClientAliveCountMax 4\n`,
		fmt.Sprintf(`(file-system %q %q "9p" () "trans=virtio,version=9p2000.L,msize=104857600" #t #t)`, guest, tag),
		`(shepherd (ssh-daemon ssh sshd) (user-processes pam syslogd loopback networking))`,
	)
	if !slices.ContainsFunc(f, func(l string) bool {
		return strings.HasPrefix(l, "(kernel-arguments ") && strings.Contains(l, `"console=ttyS0`)
	}) {
		t.Errorf("no serial console in the kernel arguments:\n%s", f.brief())
	}
	if !slices.ContainsFunc(f, func(l string) bool {
		return strings.HasPrefix(l, "(sudoers ") && strings.HasSuffix(l, fmt.Sprintf(`%s ALL=(ALL) NOPASSWD: ALL\n")`, user))
	}) {
		t.Errorf("sudoers does not end with devvm's rule for %s:\n%s", user, f.brief())
	}
	if n := f.count("(shepherd (networking)"); n != 1 {
		t.Errorf("%d Shepherd services provide networking, want 1:\n%s", n, f.brief())
	}
	if n := f.count("(user " + fmt.Sprintf("%q", user)); n != 1 {
		t.Errorf("%d accounts named %s, want 1", n, user)
	}
}

func TestContract(t *testing.T) {
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
	w := newWorld(t, authorizedKey(t))
	aliceKey := authorizedKey(t)
	var builds []*build
	var wantFail []*build
	add := func(b build) *build { builds = append(builds, &b); return builds[len(builds)-1] }

	// 1. A project's own VM config in qbuf's shape: its own 9p tag at
	// /mnt/workspace, a user "dev" with a password, password SSH, dhcpcd,
	// no authorized key for dev; plus a second user with her own key.
	qbuf := w.project("qbuf", map[string]string{
		"alice.pub": string(aliceKey),
		"dev-vm.scm": `;; The project's own development VM.
(use-modules (gnu) (gnu system))
(use-service-modules networking ssh)
(use-package-modules version-control)

(operating-system
  (host-name "qbuf-dev")
  (timezone "Etc/UTC")
  (bootloader (bootloader-configuration
               (bootloader grub-bootloader)
               (targets '("/dev/vda"))))
  (file-systems (cons* (file-system
                         (mount-point "/")
                         (device "/dev/vda1")
                         (type "ext4"))
                       (file-system
                         (mount-point "/mnt/workspace")
                         (device "qbuf_share")
                         (type "9p")
                         (options "trans=virtio,version=9p2000.L"))
                       %base-file-systems))
  (users (cons* (user-account
                  (name "dev")
                  (group "users")
                  (password (crypt "dev" "$6$qbuf"))
                  (supplementary-groups '("wheel")))
                (user-account
                  (name "alice")
                  (uid 1000)
                  (group "users"))
                %base-user-accounts))
  (packages (cons git %base-packages))
  (services (cons* (service dhcpcd-service-type)
                   (service openssh-service-type
                            (openssh-configuration
                             (password-authentication? #t)
                             (authorized-keys
                              ` + "`" + `(("alice" ,(local-file "alice.pub"))))))
                   %base-services)))
`,
	})
	qb := w.contractFor(qbuf, "dev-vm.scm")
	// What `devvm init` adopts: the checkout at the project's mount point
	// with the project's tag.
	qb.contract.Shares = []devguix.Share{{Tag: "qbuf_share", Guest: "/mnt/workspace"}}
	qbufB := add(qb)

	// 2. A config in the style of Guix's bare-bones.tmpl: no devvm bits, a
	// root by label, user alice in wheel, console=ttyS0,115200, dhcpcd and
	// OpenSSH on port 2222.
	bare := w.project("bare", map[string]string{"config.scm": `(use-modules (gnu))
(use-service-modules networking ssh)
(use-package-modules screen ssh)

(operating-system
  (host-name "komputilo")
  (timezone "Europe/Berlin")
  (locale "en_US.utf8")
  (bootloader (bootloader-configuration
                (bootloader grub-bootloader)
                (targets '("/dev/sdX"))))
  (kernel-arguments (list "console=ttyS0,115200"))
  (file-systems (cons (file-system
                        (device (file-system-label "my-root"))
                        (mount-point "/")
                        (type "ext4"))
                      %base-file-systems))
  (users (cons (user-account
                (name "alice")
                (comment "a user of the project")
                (group "users")
                (supplementary-groups '("wheel" "audio" "video")))
               %base-user-accounts))
  (packages (cons screen %base-packages))
  (services (append (list (service dhcpcd-service-type)
                          (service openssh-service-type
                                   (openssh-configuration
                                     (openssh openssh-sans-x)
                                     (port-number 2222))))
                    %base-services)))
`})
	bareB := add(w.contractFor(bare, "config.scm"))

	// 3. No OpenSSH and no networking at all: devvm adds both.
	bareOS := w.project("noservices", map[string]string{"os.scm": `(use-modules (gnu))
(define %os
  (operating-system
    (host-name "plain")
    (bootloader (bootloader-configuration (bootloader grub-bootloader) (targets '("/dev/vda"))))
    (file-systems (cons (file-system (mount-point "/") (device "/dev/vda1") (type "ext4")) %base-file-systems))))
%os
`})
	noSvcB := add(w.contractFor(bareOS, "os.scm"))

	// 4. Every shipped template, rendered as `devvm init` writes it.
	tmplB := map[string]*build{}
	for _, name := range templates.GuixNames() {
		src, err := templates.RenderGuix(name, templates.Data{HostName: "tmpl", Packages: templates.DefaultPackages})
		if err != nil {
			t.Fatal(err)
		}
		dir := w.project("tmpl-"+name, map[string]string{"dev-vm.scm": string(src)})
		tmplB[name] = add(w.contractFor(dir, "dev-vm.scm"))
	}

	// 5. guix.scm in the forms `guix shell -D -f` accepts, and manifests.
	pkgDefs := `(use-modules (guix packages) (guix gexp) (guix build-system gnu) (guix licenses)
             (gnu packages base) (gnu packages bash) (gnu packages pkg-config) (gnu packages guile))
(define proj
  (package
    (name "proj")
    (version "0")
    (source (local-file "." "proj-checkout" #:recursive? #t))
    (build-system gnu-build-system)
    ;; guile-3.0 and bash-minimal also come with the OS's packages.
    (native-inputs (list pkg-config guile-3.0 bash-minimal))
    (inputs (list hello))
    (synopsis "p") (description "p") (home-page "https://example.org") (license gpl3+)))
`
	packages := map[string]string{
		"package": pkgDefs + "proj\n",
		"pair":    pkgDefs + "(list proj \"out\")\n",
		"list":    pkgDefs + "(list proj (@ (gnu packages version-control) git))\n",
		"nested":  pkgDefs + "(list (list proj \"out\") (list (@ (gnu packages compression) zstd)))\n",
		"manifest": `(use-modules (guix profiles) (gnu packages))
(specifications->manifest '("gcc-toolchain" "cmake" "tar" "guile"))
`,
	}
	pkgB := map[string]*build{}
	for form, text := range packages {
		dir := w.project("pkgs-"+form, map[string]string{"dev-vm.scm": mustTemplate(t, nil), "guix.scm": text,
			"src/main.c": "int main(void) { return 0; }\n"})
		b := w.contractFor(dir, "dev-vm.scm")
		b.contract.Packages = filepath.Join(dir, "guix.scm")
		pkgB[form] = add(b)
	}
	// The conflict devvm avoids: the same inputs appended naively to
	// %base-packages by a project's own config fail in real guix.
	naive := w.project("pkgs-naive", map[string]string{"guix.scm": packages["package"],
		"dev-vm.scm": strings.Replace(mustTemplate(t, nil), "   %base-packages)",
			"   (append (map (lambda (e) (list (manifest-entry-item e) (manifest-entry-output e)))\n"+
				"                (manifest-entries (package->development-manifest (load \"guix.scm\"))))\n"+
				"           %base-packages))", 1),
	})
	if !strings.Contains(readFile(t, filepath.Join(naive, "dev-vm.scm")), "package->development-manifest") {
		t.Fatal("the naive fixture did not get its packages line; the default template changed")
	}
	os.WriteFile(filepath.Join(naive, "dev-vm.scm"), []byte(strings.Replace(readFile(t, filepath.Join(naive, "dev-vm.scm")),
		"(use-modules (gnu) (gnu system))", "(use-modules (gnu) (gnu system) (guix profiles))", 1)), 0o644)
	naiveB := w.contractFor(naive, "dev-vm.scm")
	wantFail = append(wantFail, &naiveB)

	// 6. The Guix manual's layout: guix.scm a symlink to
	// .guix/modules/proj-package.scm, source (local-file "../.." …
	// #:select? (git-predicate …)), in a Git checkout; and a manifest that
	// uses a module of .guix/modules (needs -L).
	manual := w.project("manual", map[string]string{
		"dev-vm.scm": mustTemplate(t, nil),
		".guix/modules/proj-package.scm": `(define-module (proj-package)
  #:use-module (guix packages)
  #:use-module (guix gexp)
  #:use-module (guix git-download)
  #:use-module (guix utils)
  #:use-module (guix build-system gnu)
  #:use-module ((guix licenses) #:prefix license:)
  #:use-module (gnu packages pkg-config)
  #:use-module (gnu packages base))

(define vcs-file?
  (or (git-predicate (dirname (dirname (current-source-directory))))
      (const #t)))

(define-public proj
  (package
    (name "proj")
    (version "0.1-git")
    (source (local-file "../.." "proj-checkout" #:recursive? #t #:select? vcs-file?))
    (build-system gnu-build-system)
    (native-inputs (list pkg-config))
    (inputs (list hello))
    (synopsis "p") (description "p") (home-page "https://example.org") (license license:gpl3+)))

proj
`,
		".guix/modules/proj/deps.scm": `(define-module (proj deps)
  #:use-module (guix profiles)
  #:use-module (gnu packages)
  #:export (%proj-deps))
(define %proj-deps (specifications->manifest '("make" "pkg-config")))
`,
		"manifest.scm": "(use-modules (proj deps))\n%proj-deps\n",
		"README":       "a project\n",
	})
	if err := os.Symlink(".guix/modules/proj-package.scm", filepath.Join(manual, "guix.scm")); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("sh", "-c", "cd '"+manual+"' && git init -q && git add -A && git -c user.name=t -c user.email=t@e commit -qm init").CombinedOutput(); err != nil {
		t.Fatalf("git init of the manual-layout fixture: %v\n%s", err, out)
	}
	symB := w.contractFor(manual, "dev-vm.scm")
	symB.contract.Packages = filepath.Join(manual, "guix.scm")
	manualSym := add(symB)
	lp := w.contractFor(manual, "dev-vm.scm", "manual-L")
	lp.contract.Packages = filepath.Join(manual, "manifest.scm")
	lp.req.LoadPath = []string{filepath.Join(manual, ".guix", "modules")}
	manualL := add(lp)
	// The same manifest without -L cannot find (proj deps).
	noL := w.contractFor(manual, "dev-vm.scm", "manual-noL")
	noL.contract.Packages = lp.contract.Packages
	wantFail = append(wantFail, &noL)

	// 7. channels.scm as people write it, with --disable-authentication.
	chans := w.project("channels", map[string]string{
		"dev-vm.scm": mustTemplate(t, nil),
		"channels.scm": `(use-modules (guix channels))
(list (channel
        (inherit %default-guix-channel)
        (commit "` + guixV150 + `")))
`})
	chB := w.contractFor(chans, "dev-vm.scm")
	chB.req.DisableAuthentication = true
	chanB := add(chB)

	// Evaluate everything (in parallel: each is a separate guix process).
	var wg sync.WaitGroup
	drvs := map[*build]string{}
	errs := map[*build]error{}
	var mu sync.Mutex
	sem := make(chan struct{}, 2)
	for _, b := range append(slices.Clone(builds), wantFail...) {
		wg.Add(1)
		go func(b *build) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			drv, err := w.evaluate(b)
			mu.Lock()
			drvs[b], errs[b] = drv, err
			mu.Unlock()
		}(b)
	}
	start := time.Now()
	wg.Wait()
	t.Logf("%d devvm evaluations in %.1f s (2 at a time)", len(builds)+len(wantFail), time.Since(start).Seconds())
	for _, b := range builds {
		if errs[b] != nil || !strings.HasSuffix(drvs[b], "-run-vm.sh.drv") {
			t.Errorf("%s: devvm's evaluation failed: %v", filepath.Base(b.dir), errs[b])
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	t.Run("qbuf-like", func(t *testing.T) {
		f := w.inspect(*qbufB)
		f.contract(t, w.key, "dev", "qbuf_share", "/mnt/workspace")
		// The project's users, keys, password login and networking stay.
		f.want(t, `(user "dev" #f "users" ("wheel") #t)`, `(user "alice" 1000 "users" () #f)`,
			fmt.Sprintf("(authorized-key %q %q)", "alice", string(aliceKey)),
			"(sshd password-authentication #t)", `(host-name "qbuf-dev")`)
		// Its own 9p entry at /mnt/workspace is replaced, not doubled.
		if n := f.count(`(file-system "/mnt/workspace"`); n != 1 {
			t.Errorf("%d file systems at /mnt/workspace", n)
		}
		f.wantNot(t, `(file-system "/mnt/qbuf"`)
	})
	t.Run("bare-bones", func(t *testing.T) {
		f := w.inspect(*bareB)
		f.contract(t, w.key, "dev", "share0", "/mnt/bare")
		// devvm's user is added with the checkout owner's uid; alice stays.
		f.want(t, `(user "dev" 1000 "users" () #f)`, `(user "alice" #f "users" ("wheel" "audio" "video") #f)`,
			`(kernel-arguments ("console=ttyS0,115200"))`, `(host-name "komputilo")`)
	})
	t.Run("no-services", func(t *testing.T) {
		f := w.inspect(*noSvcB)
		f.contract(t, w.key, "dev", "share0", "/mnt/noservices")
		f.want(t, "(sshd password-authentication #f)", `(sudoers "root ALL=(ALL) ALL\n%wheel ALL=(ALL) ALL\ndev ALL=(ALL) NOPASSWD: ALL\n")`)
	})
	for name, b := range tmplB {
		t.Run("template/"+name, func(t *testing.T) {
			f := w.inspect(*b)
			f.contract(t, w.key, "dev", "share0", "/mnt/tmpl-"+name)
			f.want(t, "(sshd password-authentication #f)", "(sshd permit-root-login #f)", `(user "dev" 1000 "users" () #f)`)
		})
	}
	for form, b := range pkgB {
		t.Run("packages/"+form, func(t *testing.T) {
			f := w.inspect(*b)
			f.contract(t, w.key, "dev", "share0", "/mnt/pkgs-"+form)
			// inspect.scm prints (package output) entries as "name:output".
			want := map[string][]string{
				"package": {`"pkg-config:out"`, `"hello:out"`},
				"pair":    {`"pkg-config:out"`, `"hello:out"`},
				// -D applies to every package of a list: git's own inputs.
				"list":     {`"pkg-config:out"`, `"hello:out"`, `"expat:out"`},
				"nested":   {`"pkg-config:out"`, `"hello:out"`},
				"manifest": {`"gcc-toolchain:out"`, `"cmake:out"`},
			}[form]
			line := f.line("(packages ")
			for _, p := range want {
				if !strings.Contains(line, p) {
					t.Errorf("the OS packages lack %s: %s", p, line)
				}
			}
			// One entry per name: no conflicting variants.
			for _, p := range []string{"guile", "bash", "bash-minimal", "tar", "zstd", "coreutils"} {
				if n := strings.Count(line, `"`+p+`"`) + strings.Count(line, `"`+p+`:out"`); n > 1 {
					t.Errorf("%s is in the OS packages %d times: %s", p, n, line)
				}
			}
		})
	}
	t.Run("packages/naive-conflict", func(t *testing.T) {
		if errs[&naiveB] == nil {
			t.Fatalf("appending a package's development inputs to %%base-packages evaluated; the conflict devvm avoids is gone from guix %s", guixV150)
		}
		if !strings.Contains(errs[&naiveB].Error(), "conflicting entries") {
			t.Errorf("want real guix's profile collision, got %v", errs[&naiveB])
		}
	})
	t.Run("manual-layout/guix.scm-symlink", func(t *testing.T) {
		f := w.inspect(*manualSym)
		f.contract(t, w.key, "dev", "share0", "/mnt/manual")
		if line := f.line("(packages "); !strings.Contains(line, `"pkg-config:out"`) || !strings.Contains(line, `"hello:out"`) {
			t.Errorf("the package's inputs are missing: %s", line)
		}
		// The build key leaves the project's source out.
		key, files, err := devguix.Key(devguix.Inputs{Config: manualSym.contract.ProjectConfig, Channels: manualSym.req.Channels,
			Manifest: manualSym.contract.Packages, Wrapper: manualSym.req.Config})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "README") {
				t.Errorf("the key hashed the project's source: %v", files)
			}
		}
		os.WriteFile(filepath.Join(manual, "README"), []byte("edited\n"), 0o644)
		if k, _, _ := devguix.Key(devguix.Inputs{Config: manualSym.contract.ProjectConfig, Channels: manualSym.req.Channels,
			Manifest: manualSym.contract.Packages, Wrapper: manualSym.req.Config}); k != key {
			t.Error("a source edit changed the build key")
		}
	})
	t.Run("manual-layout/load-path", func(t *testing.T) {
		f := w.inspect(*manualL)
		if line := f.line("(packages "); !strings.Contains(line, `"make:out"`) || !strings.Contains(line, `"pkg-config:out"`) {
			t.Errorf("the manifest's packages are missing: %s", line)
		}
		if errs[&noL] == nil || !strings.Contains(errs[&noL].Error(), "proj deps") {
			t.Errorf("without -L the manifest should fail to find (proj deps): %v", errs[&noL])
		}
	})
	t.Run("channels", func(t *testing.T) {
		w.inspect(*chanB).contract(t, w.key, "dev", "share0", "/mnt/channels")
		if err := devguix.CheckPinned(chanB.req.Channels); err != nil {
			t.Errorf("devvm refuses a pinned (inherit %%default-guix-channel): %v", err)
		}
		log := readFile(t, w.tmLog)
		if !strings.Contains(log, "-C "+chanB.req.Channels+" --disable-authentication") {
			t.Errorf("time-machine was not given --disable-authentication:\n%s", log)
		}
		// What devvm reads from channels files is what guix reads.
		w.channelsAgree(t)
	})
	t.Run("derivation-is-stable", func(t *testing.T) {
		// A comment-only edit of the project's config: the key changes,
		// the derivation does not (so devvm does not rebuild).
		cfg := qbufB.contract.ProjectConfig
		os.WriteFile(cfg, []byte(readFile(t, cfg)+"\n;; a comment\n"), 0o644)
		drv, err := w.evaluate(qbufB)
		if err != nil || drv != drvs[qbufB] {
			t.Errorf("after a comment edit: %s (%v), before %s", drv, err, drvs[qbufB])
		}
	})
}

// channelsAgree evaluates channel files with real guix and compares the
// names, URLs and commits with devguix.ParseChannels.
func (w *world) channelsAgree(t *testing.T) {
	full := guixV150
	files := map[string]string{
		"inherit.scm": "(use-modules (guix channels))\n(list (channel (inherit %default-guix-channel) (commit \"" + full + "\")))\n",
		"two.scm": `(list (channel
        (name 'nonguix)
        (url "https://gitlab.com/nonguix/nonguix")
        (commit "` + strings.Repeat("1", 40) + `")
        (introduction
         (make-channel-introduction
          "897c1a470da759236cc11798f4e0a5f7d4d59fbc"
          (openpgp-fingerprint "2A39 3FFF 68F4 EF7A 3D29  12AF 6F51 20A0 22FB B2D5"))))
      (channel
        (name 'guix)
        (url "https://git.guix.gnu.org/guix.git")
        (branch "master")
        (commit "` + full + `")))
`,
		"fork.scm": `(list (channel (name 'guix) (url "https://example.org/my/guix.git") (commit "` + full + `")))` + "\n",
	}
	dir := w.project("channel-forms", files)
	for name := range files {
		p := filepath.Join(dir, name)
		script := `(use-modules (guix channels) (guix ui))
(for-each (lambda (c)
            (format #t "~a ~a ~a ~a~%" (channel-name c) (channel-url c) (channel-commit c)
                    (if (channel-introduction c) "intro" "no-intro")))
          (load* "` + p + `" (make-user-module '((guix channels)))))
`
		sp := filepath.Join(dir, name+".print")
		os.WriteFile(sp, []byte(script), 0o644)
		r := chrootSh(t, "run", "--", "guix", "repl", "--", sp)
		if r.code != 0 {
			t.Fatalf("guix reading %s: %s", name, r)
		}
		chans, err := devguix.ParseChannels(readFile(t, p))
		if err != nil {
			t.Fatal(err)
		}
		var ours []string
		for _, c := range chans {
			intro := "no-intro"
			if c.Introduction {
				intro = "intro"
			}
			ours = append(ours, fmt.Sprintf("%s %s %s %s", c.Name, c.URL, c.Commit, intro))
		}
		if got := strings.TrimSpace(r.stdout); got != strings.Join(ours, "\n") {
			t.Errorf("%s: guix reads\n%s\ndevvm reads\n%s", name, got, strings.Join(ours, "\n"))
		}
	}
}

func (f facts) line(prefix string) string {
	for _, l := range f {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// mustTemplate renders the default template with pkgs.
func mustTemplate(t *testing.T, pkgs []string) string {
	t.Helper()
	src, err := templates.RenderGuix(templates.DefaultGuix, templates.Data{HostName: "proj", Packages: pkgs})
	if err != nil {
		t.Fatal(err)
	}
	return string(src)
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
