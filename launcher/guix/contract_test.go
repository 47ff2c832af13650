package guix

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// The Guix manual's layout ("Software Development" > "Getting Started"):
// guix.scm is a symlink to .guix/modules/<name>-package.scm, whose source
// is (local-file "../.." … #:recursive? #t). The VM only gets the package's
// inputs, so a source edit must not change the key, and the neighbouring
// checkouts under ../.. of the module must not be hashed.
func TestKeyLeavesOutTheProjectSource(t *testing.T) {
	top := t.TempDir()
	dir := filepath.Join(top, "proj")
	write(t, top, map[string]string{"neighbour/big.c": "int x;\n"})
	write(t, dir, map[string]string{
		"dev-vm.scm":     `(operating-system (host-name "x") (services (list (local-file "etc-files" #:recursive? #t) (local-file "." "proj-checkout" #:recursive? #t))))`,
		"etc-files/motd": "hello\n",
		"channels.scm":   `(list (channel (name 'guix) (commit "230aa373f315f247852ee07dff34146e9b480aec")))`,
		".guix/modules/proj-package.scm": `(define-module (proj-package))
(define vcs-file? (or (git-predicate (dirname (dirname (current-source-directory)))) (const #t)))
(define-public proj (package (name "proj") (source (local-file "../.." "proj-checkout" #:recursive? #t #:select? vcs-file?))
  (inputs (list (load "inputs.scm")))))
proj
`,
		".guix/modules/inputs.scm": `(list)`,
		"src/main.c":               "int main() {}\n",
	})
	if err := os.Symlink(".guix/modules/proj-package.scm", filepath.Join(dir, "guix.scm")); err != nil {
		t.Fatal(err)
	}
	in := Inputs{Config: filepath.Join(dir, "dev-vm.scm"), Channels: filepath.Join(dir, "channels.scm"),
		Manifest: filepath.Join(dir, "guix.scm"), LoadPath: []string{filepath.Join(dir, ".guix/modules")}}
	k1, files, err := Key(in)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(files, "\n")
	for _, bad := range []string{"main.c", "big.c"} {
		if strings.Contains(got, bad) {
			t.Errorf("the key hashed the project's source %s:\n%s", bad, got)
		}
	}
	for _, want := range []string{"proj-package.scm", "inputs.scm", "motd", "dev-vm.scm"} {
		if !strings.Contains(got, want) {
			t.Errorf("the key did not hash %s:\n%s", want, got)
		}
	}
	write(t, dir, map[string]string{"src/main.c": "int main() { return 1; }\n"})
	write(t, top, map[string]string{"neighbour/big.c": "int y;\n"})
	if k, _, _ := Key(in); k != k1 {
		t.Error("a source-only edit changed the key")
	}
	for _, f := range []string{".guix/modules/inputs.scm", "etc-files/motd", ".guix/modules/proj-package.scm"} {
		p := filepath.Join(dir, f)
		old, _ := os.ReadFile(p)
		os.WriteFile(p, append(old, ' '), 0o644)
		if k, _, _ := Key(in); k == k1 {
			t.Errorf("changing %s did not change the key", f)
		}
		os.WriteFile(p, old, 0o644)
	}
	// A new module in the load path is an input too.
	write(t, dir, map[string]string{".guix/modules/more.scm": "(define-module (more))"})
	if k, _, _ := Key(in); k == k1 {
		t.Error("a new module under [guix] load_path did not change the key")
	}
}

func TestKeyWrapper(t *testing.T) {
	dir, in := writeInputs(t)
	k1, _, _ := Key(in)
	in.Wrapper = filepath.Join(dir, "devvm-vm.scm")
	write(t, dir, map[string]string{"devvm-vm.scm": `(define %devvm-user "dev")`})
	k2, _, err := Key(in)
	if err != nil || k2 == k1 {
		t.Fatalf("the wrapper is not an input: %v", err)
	}
	write(t, dir, map[string]string{"devvm-vm.scm": `(define %devvm-user "ann")`})
	if k, _, _ := Key(in); k == k2 {
		t.Error("a wrapper change did not change the key")
	}
}

func contract(dir string) Contract {
	return Contract{ProjectConfig: filepath.Join(dir, "my project", `we"ird\dev-vm.scm`), User: "dev", UID: 1000,
		AuthorizedKeysFile: filepath.Join(dir, "authorized_keys"),
		Shares:             []Share{{Tag: "share0", Guest: "/mnt/p"}, {Tag: "qbuf_share", Guest: "/mnt/workspace", ReadOnly: true}}}
}

func TestWriteWrapper(t *testing.T) {
	dir := t.TempDir()
	c := contract(dir)
	state := filepath.Join(dir, "state", "vm")
	p, err := WriteWrapper(state, c)
	if err != nil {
		t.Fatal(err)
	}
	if p != filepath.Join(state, WrapperName) {
		t.Errorf("path %s", p)
	}
	text, _ := os.ReadFile(p)
	for _, want := range []string{
		`(define %devvm-config "` + strings.ReplaceAll(filepath.Join(dir, "my project"), `\`, `\\`) + `/we\"ird\\dev-vm.scm")`,
		`(list "qbuf_share" "/mnt/workspace" #t)`, `(define %devvm-user "dev")`,
	} {
		if !strings.Contains(string(text), want) {
			t.Errorf("wrapper lacks %s", want)
		}
	}
	st1, _ := os.Stat(p)
	// Unchanged content: the file is left alone.
	old := st1.ModTime().Add(-3600e9)
	os.Chtimes(p, old, old)
	if _, err := WriteWrapper(state, c); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(p); !st.ModTime().Equal(old) {
		t.Error("an unchanged wrapper was rewritten")
	}
	c.User = "ann"
	WriteWrapper(state, c)
	if text2, _ := os.ReadFile(p); string(text2) == string(text) {
		t.Error("a contract change did not reach the wrapper")
	}
	ents, _ := os.ReadDir(state)
	if len(ents) != 1 {
		t.Errorf("leftovers next to the wrapper: %v", ents)
	}
}

func TestWrapperRefusesBadContracts(t *testing.T) {
	dir := t.TempDir()
	for name, mod := range map[string]func(*Contract){
		"relative config": func(c *Contract) { c.ProjectConfig = "dev-vm.scm" },
		"relative keys":   func(c *Contract) { c.AuthorizedKeysFile = "keys" },
		"user":            func(c *Contract) { c.User = "Dev User" },
		"tag":             func(c *Contract) { c.Shares[0].Tag = "has/slash" },
		"guest":           func(c *Contract) { c.Shares[0].Guest = "mnt" },
		"twice":           func(c *Contract) { c.Shares[1].Guest = c.Shares[0].Guest },
		"nul":             func(c *Contract) { c.ProjectConfig += "\x00" },
	} {
		c := contract(dir)
		mod(&c)
		if _, err := WriteWrapper(dir, c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := WriteWrapper("rel", contract(dir)); err == nil {
		t.Error("relative directory accepted")
	}
}

func TestArgvOptions(t *testing.T) {
	r := &Runner{Guix: "guix"}
	req := Request{Config: "/s/devvm-vm.scm", Channels: "/p/channels.scm", Root: "/s/root", Persistent: true,
		LoadPath: []string{"/p/.guix/modules", "/p/my dir"}, DisableAuthentication: true, ImageSize: 8 << 30}
	want := "guix time-machine -C /p/channels.scm --disable-authentication -- system vm -L /p/.guix/modules -L /p/my dir --persistent --image-size=8589934592"
	if got := strings.Join(r.Argv(req), " "); got != want+" -r /s/root /s/devvm-vm.scm" {
		t.Errorf("build argv %q", got)
	}
	if got := strings.Join(r.DerivationArgv(req), " "); got != want+" -d /s/devvm-vm.scm" {
		t.Errorf("derivation argv %q", got)
	}
	req.Persistent = false
	if got := strings.Join(r.DerivationArgv(req), " "); strings.Contains(got, "image-size") {
		t.Errorf("--image-size without --persistent: %q", got)
	}
}

func TestRunnerDerivation(t *testing.T) {
	// Like real guix -d: the .drv alone on stdout, nothing built, no root.
	r, dir := fakeGuix(t, `
for a; do [ "$a" = -r ] && { echo "guix system: error: -r with -d" >&2; exit 1; }; done
echo "guix system: warning: Consider running 'guix pull'" >&2
echo /gnu/store/abc-run-vm.sh.drv
`)
	res, err := r.Derivation(context.Background(), request(dir))
	if err != nil {
		t.Fatal(err)
	}
	if res.RunVM != "/gnu/store/abc-run-vm.sh.drv" || res.Argv[len(res.Argv)-2] != "-d" {
		t.Errorf("got %+v", res)
	}
	if _, err := os.Lstat(request(dir).Root); err == nil {
		t.Error("Derivation created a GC root")
	}
	r2, dir2 := fakeGuix(t, "echo /gnu/store/abc-run-vm.sh\n")
	if _, err := r2.Derivation(context.Background(), request(dir2)); err == nil || !strings.Contains(err.Error(), ".drv") {
		t.Errorf("a run-vm.sh instead of a .drv: %v", err)
	}
}

func TestParseChannelsAsPeopleWriteThem(t *testing.T) {
	full := "230aa373f315f247852ee07dff34146e9b480aec"
	src := `(use-modules (guix channels))
(list (channel
        (name 'nonguix)
        (url "https://gitlab.com/nonguix/nonguix")
        (commit "` + full + `")
        (introduction (make-channel-introduction "897c1a470da759236cc11798f4e0a5f7d4d59fbc"
                        (openpgp-fingerprint "2A39 3FFF 68F4 EF7A 3D29  12AF 6F51 20A0 22FB B2D5"))))
      (channel
        (inherit %default-guix-channel)
        (commit "` + full + `")))
`
	chans, err := ParseChannels(src)
	if err != nil || len(chans) != 2 {
		t.Fatalf("%v %+v", err, chans)
	}
	if g := chans[1]; g.Name != "guix" || g.URL != "https://git.guix.gnu.org/guix.git" || g.Commit != full || !g.Introduction || g.Inherit != "%default-guix-channel" {
		t.Errorf("inherited guix channel: %+v", g)
	}
	if !chans[0].Introduction || chans[0].Name != "nonguix" {
		t.Errorf("nonguix: %+v", chans[0])
	}
	dir := t.TempDir()
	for name, c := range map[string]struct{ src, wantErr string }{
		"inherit":        {src, ""},
		"inherit-branch": {`(list (channel (inherit %default-guix-channel)))`, "channel 'guix follows branch \"master\""},
		"default-channels": {`(cons (channel (name 'nonguix) (url "https://x") (commit "` + full + `")) %default-channels)`,
			"%default-channels is the guix channel at the tip of its master branch"},
		"fork-no-intro": {`(list (channel (name 'guix) (url "https://example.org/my-guix.git") (commit "` + full + `")))`, ""},
		"inherit-other": {`(list (channel (inherit my-channel) (branch "main")))`, "channel '(inherit my-channel) follows"},
	} {
		p := filepath.Join(dir, name+".scm")
		os.WriteFile(p, []byte(c.src), 0o644)
		err := CheckPinned(p)
		if (err == nil) != (c.wantErr == "") || (err != nil && !strings.Contains(err.Error(), c.wantErr)) {
			t.Errorf("%s: %v, want %q", name, err, c.wantErr)
		}
	}
}

func TestClassifyAuthentication(t *testing.T) {
	// The shapes of guix:guix/channels.scm and guix/git-authenticate.scm
	// (v1.5.0) for a fork pinned in channels.scm.
	for _, line := range []string{
		"guix time-machine: error: channel 'guix' lacks an introduction and cannot be authenticated",
		"guix time-machine: error: commit 0123456789abcdef0123456789abcdef01234567 not signed by an authorized key: 1234 5678",
	} {
		e := Classify([]string{"Updating channel 'guix' from Git repository at 'https://example.org/guix.git'...", line}, 1, "dev-vm.scm", "channels.scm")
		if e.Kind != FailAuth || !strings.Contains(e.Hint, "disable_authentication = true") {
			t.Errorf("%q: %+v", line, e)
		}
	}
}
