// Package templates embeds the files `devvm init` writes into a checkout:
// Guix System operating-system configs for the guix backend and a flake for
// the microvm backend. Guix templates are Go text/templates over Data.
package templates

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"text/template"
)

// Version is part of every build key: bump it whenever a template changes
// in a way that changes the VMs built from it.
const Version = "5"

//go:embed guix/*.scm microvm/* wrapper/*.scm
var files embed.FS

// DefaultGuix is the template `devvm init` uses.
const DefaultGuix = "default"

// Share is one 9p file system the wrapper mounts.
type Share struct {
	Tag      string // QEMU mount_tag
	Guest    string // mount point
	ReadOnly bool
}

// Data fills a Guix template: a plain operating-system file, free of
// devvm's contract (the wrapper adds that at build time).
type Data struct {
	HostName string
	// Packages are package specifications for the OS (on top of
	// %base-packages); none when the project's packages come from a
	// manifest.
	Packages []string
}

// DefaultPackages is the package set of a VM whose project has no manifest.
var DefaultPackages = []string{"bash", "coreutils", "git", "make", "gcc-toolchain", "nss-certs", "less", "nano", "curl"}

// GuixNames lists the shipped Guix templates.
func GuixNames() []string {
	ents, _ := fs.ReadDir(files, "guix")
	var out []string
	for _, e := range ents {
		out = append(out, strings.TrimSuffix(e.Name(), ".scm"))
	}
	sort.Strings(out)
	return out
}

var funcs = template.FuncMap{
	// scm renders a Go string as a Scheme string literal.
	"scm": Quote,
}

// Quote renders a Go string as a Scheme string literal: backslashes and
// double quotes are escaped, and so are line breaks, so a literal always
// stays on one line.
func Quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`)
	return `"` + r.Replace(s) + `"`
}

// RenderGuix renders the named Guix template.
func RenderGuix(name string, d Data) ([]byte, error) {
	if _, err := fs.Stat(files, path.Join("guix", name+".scm")); err != nil {
		return nil, fmt.Errorf("no Guix template %q (have: %s)", name, strings.Join(GuixNames(), ", "))
	}
	return render(path.Join("guix", name+".scm"), d)
}

func render(name string, d any) ([]byte, error) {
	src, err := files.ReadFile(name)
	if err != nil {
		return nil, err
	}
	t, err := template.New(name).Funcs(funcs).Option("missingkey=error").Parse(string(src))
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	return b.Bytes(), nil
}

// Wrapper fills the wrapper devvm generates before every build: it loads
// the project's operating-system file and extends it with devvm's contract.
// Paths are absolute.
type Wrapper struct {
	ProjectConfig      string // the project's operating-system file
	User               string // the Vmfile's ssh.user
	UID                int    // uid for User when the OS has no such account
	AuthorizedKeysFile string // the keys allowed to log in as User
	HostName           string // "" keeps the OS's host-name
	Packages           string // a manifest or package file (guix shell -m / -D -f), or ""
	Shares             []Share
}

// RenderWrapper renders the build-time wrapper.
func RenderWrapper(w Wrapper) ([]byte, error) {
	return render("wrapper/devvm-vm.scm", w)
}

// MicroVMFile returns a file of the microvm.nix flake template.
func MicroVMFile(name string) ([]byte, error) {
	return files.ReadFile(path.Join("microvm", name))
}
