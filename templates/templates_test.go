package templates

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func base() Data {
	return Data{
		HostName: "qbuf", User: "dev", UID: 1000,
		Shares:         []Share{{Tag: "share0", Guest: "/mnt/qbuf"}},
		Packages:       DefaultPackages,
		AuthorizedKeys: ".devvm/authorized_keys",
	}
}

// TestGolden renders every template in the shapes devvm uses and compares
// with testdata/*.golden (go test ./templates -update rewrites them; the
// real-Guix tier checks that guix accepts what they contain).
func TestGolden(t *testing.T) {
	manifest := base()
	manifest.Manifest, manifest.Packages = "manifest.scm", nil
	pkg := base()
	pkg.PackageFile, pkg.Packages = "guix.scm", nil
	two := base()
	two.Shares = append(two.Shares, Share{Tag: "share1", Guest: "/mnt/ref", ReadOnly: true})
	cases := map[string]struct {
		tmpl string
		d    Data
	}{
		"default-packages":   {"default", base()},
		"default-manifest":   {"default", manifest},
		"default-guix-scm":   {"default", pkg},
		"default-two-shares": {"default", two},
		"minimal":            {"minimal", base()},
	}
	for name, c := range cases {
		got, err := RenderGuix(c.tmpl, c.d)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		path := filepath.Join("testdata", name+".golden")
		if *update {
			os.WriteFile(path, got, 0o644)
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v (run go test ./templates -update)", name, err)
		}
		if string(got) != string(want) {
			t.Errorf("%s: rendering differs from %s (run with -update if intended, and bump Version)", name, path)
		}
	}
}

func TestEveryTemplateRenders(t *testing.T) {
	names := GuixNames()
	if len(names) < 2 {
		t.Fatalf("templates: %v", names)
	}
	for _, n := range names {
		out, err := RenderGuix(n, base())
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		for _, want := range []string{`(device "share0")`, `(mount-point "/mnt/qbuf")`, "(mount-may-fail? #t)", "(password-authentication? #f)",
			"static-networking-service-type", `".devvm/authorized_keys"`, "console=ttyS0"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("%s lacks %s", n, want)
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

func TestSchemeStrings(t *testing.T) {
	d := base()
	d.HostName = `we"ird\name`
	out, err := RenderGuix("default", d)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `(host-name "we\"ird\\name")`) {
		t.Errorf("host name not escaped as a Scheme string:\n%s", out)
	}
}
