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
const Version = "4"

//go:embed guix/*.scm microvm/*
var files embed.FS

// DefaultGuix is the template `devvm init` uses.
const DefaultGuix = "default"

// Share is one 9p file system the config mounts.
type Share struct {
	Tag      string // QEMU mount_tag, fixed in the config
	Guest    string // mount point
	ReadOnly bool
}

// Data fills a Guix template.
type Data struct {
	HostName string
	User     string
	UID      int
	Shares   []Share
	// Manifest is the path of the project's manifest.scm relative to the
	// config's directory, or "" to use Packages.
	Manifest string
	// PackageFile is the path of the project's guix.scm (a package
	// definition), relative to the config's directory, used when there is
	// no manifest: the VM gets the package's development inputs, like
	// `guix shell -D -f guix.scm`.
	PackageFile string
	// Packages is the default package set when there is neither.
	Packages []string
	// AuthorizedKeys is the path, relative to the config's directory, of the
	// file devvm writes with the public keys allowed to log in as User.
	AuthorizedKeys string
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
	"scm": func(s string) string {
		r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
		return `"` + r.Replace(s) + `"`
	},
}

// RenderGuix renders the named Guix template.
func RenderGuix(name string, d Data) ([]byte, error) {
	src, err := files.ReadFile(path.Join("guix", name+".scm"))
	if err != nil {
		return nil, fmt.Errorf("no Guix template %q (have: %s)", name, strings.Join(GuixNames(), ", "))
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

// MicroVMFile returns a file of the microvm.nix flake template.
func MicroVMFile(name string) ([]byte, error) {
	return files.ReadFile(path.Join("microvm", name))
}
