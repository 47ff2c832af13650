package templates

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func base() Data { return Data{HostName: "qbuf", Packages: DefaultPackages} }

func wrapper() Wrapper {
	return Wrapper{
		ProjectConfig: "/home/ann/src/qbuf/dev-vm.scm", User: "dev", UID: 1000,
		AuthorizedKeysFile: "/home/ann/.local/state/devvm/qbuf/authorized_keys",
		Shares: []Share{{Tag: "share0", Guest: "/mnt/qbuf"}, {Tag: "qbuf_share", Guest: "/mnt/workspace"},
			{Tag: "ref", Guest: "/mnt/ref", ReadOnly: true}},
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v (run go test ./templates -update)", name, err)
	}
	if string(got) != string(want) {
		t.Errorf("%s: rendering differs from %s (run with -update if intended, and bump Version)", name, path)
	}
}

// TestGolden renders every template and the wrapper in the shapes devvm
// uses and compares with testdata/*.golden (go test ./templates -update
// rewrites them; the real-Guix tier checks that guix accepts them).
func TestGolden(t *testing.T) {
	noPkgs := base()
	noPkgs.Packages = nil
	for name, c := range map[string]struct {
		tmpl string
		d    Data
	}{
		"default-packages": {"default", base()},
		"default-manifest": {"default", noPkgs},
		"minimal":          {"minimal", base()},
	} {
		got, err := RenderGuix(c.tmpl, c.d)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		golden(t, name, got)
	}
	w := wrapper()
	w.HostName, w.Packages = "qbuf", "/home/ann/src/qbuf/guix.scm"
	for name, w := range map[string]Wrapper{"wrapper": wrapper(), "wrapper-packages": w} {
		got, err := RenderWrapper(w)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		golden(t, name, got)
	}
}

// Templates are plain operating-system files: devvm's contract (user, keys,
// shares) lives in the wrapper only, so Vmfile edits never drift from them.
func TestTemplatesArePlain(t *testing.T) {
	names := GuixNames()
	if len(names) < 2 {
		t.Fatalf("templates: %v", names)
	}
	for _, n := range names {
		out, err := RenderGuix(n, base())
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		for _, bad := range []string{"authorized-keys", `(type "9p")`, "user-account", "devvm-user", ".devvm"} {
			if strings.Contains(string(out), bad) {
				t.Errorf("%s still carries devvm's contract: %q", n, bad)
			}
		}
		if strings.Count(string(out), "(")-strings.Count(string(out), ")") != 0 {
			t.Errorf("%s: unbalanced parentheses", n)
		}
	}
	if _, err := RenderGuix("nope", base()); err == nil || !strings.Contains(err.Error(), "default") {
		t.Errorf("unknown template: %v", err)
	}
}

func TestWrapperDeclares(t *testing.T) {
	out, err := RenderWrapper(wrapper())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`(define %devvm-config "/home/ann/src/qbuf/dev-vm.scm")`,
		`(define %devvm-user "dev")`,
		`(define %devvm-authorized-keys "/home/ann/.local/state/devvm/qbuf/authorized_keys")`,
		`(list "qbuf_share" "/mnt/workspace" #f)`, `(list "ref" "/mnt/ref" #t)`,
		`(define %devvm-host-name #f)`, `(define %devvm-packages-file #f)`,
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("wrapper lacks %s", want)
		}
	}
}

func TestSchemeStrings(t *testing.T) {
	for in, want := range map[string]string{
		`we"ird\name`:          `"we\"ird\\name"`,
		"/a b/c\nd":            `"/a b/c\nd"`,
		`C:\x"`:                `"C:\\x\""`,
		"/home/ann/my project": `"/home/ann/my project"`,
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
	d := base()
	d.HostName = `we"ird\name`
	out, err := RenderGuix("default", d)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `(host-name "we\"ird\\name")`) {
		t.Errorf("host name not escaped as a Scheme string:\n%s", out)
	}
	w := wrapper()
	w.ProjectConfig = `/home/ann/it's "my" \src/dev-vm.scm`
	out, err = RenderWrapper(w)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `(define %devvm-config "/home/ann/it's \"my\" \\src/dev-vm.scm")`) {
		t.Errorf("config path not escaped:\n%s", out)
	}
}
