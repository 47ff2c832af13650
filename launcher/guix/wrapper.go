package guix

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/devvm/devvm/templates"
)

// WrapperName is the file WriteWrapper writes.
const WrapperName = "devvm-vm.scm"

// Share is one Vmfile share the VM mounts over 9p.
type Share struct {
	Tag      string // QEMU mount_tag
	Guest    string // mount point in the guest
	ReadOnly bool
}

// Contract is what devvm needs of a VM, derived from the Vmfile at every
// build and applied on top of the project's operating-system by the
// wrapper. Paths are absolute.
type Contract struct {
	// ProjectConfig is the project's operating-system file ([guix] config).
	ProjectConfig string
	// User is the account devvm logs in as (ssh.user); the wrapper adds it
	// when the OS has no account of that name.
	User string
	// UID is the uid of an added User (the checkout owner's), unless the OS
	// already gives that uid to another account.
	UID int
	// AuthorizedKeysFile holds the keys authorized for User.
	AuthorizedKeysFile string
	// Shares are the Vmfile's 9p shares.
	Shares []Share
	// HostName replaces the OS's host-name unless "".
	HostName string
	// Packages is a manifest.scm or guix.scm whose packages the VM gets as
	// `guix shell -m` / `guix shell -D -f` would, or "".
	Packages string
}

var (
	reUser = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	reTag  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,30}$`)
)

func (c Contract) check() error {
	for what, p := range map[string]string{"the project's config": c.ProjectConfig, "the authorized keys file": c.AuthorizedKeysFile} {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("internal: %s must be an absolute path, got %q", what, p)
		}
	}
	if c.Packages != "" && !filepath.IsAbs(c.Packages) {
		return fmt.Errorf("internal: the packages file must be an absolute path, got %q", c.Packages)
	}
	for _, p := range []string{c.ProjectConfig, c.AuthorizedKeysFile, c.Packages, c.HostName} {
		if strings.ContainsRune(p, 0) {
			return fmt.Errorf("%q contains a NUL byte", p)
		}
	}
	if !reUser.MatchString(c.User) {
		return fmt.Errorf("ssh.user %q is not a user name Guix accepts (lower-case letters, digits, '_' and '-', starting with a letter or '_')", c.User)
	}
	if c.UID < 0 {
		return fmt.Errorf("internal: negative uid %d", c.UID)
	}
	seen := map[string]bool{}
	for _, s := range c.Shares {
		if !reTag.MatchString(s.Tag) {
			return fmt.Errorf("share tag %q: a 9p tag is 1-31 ASCII letters, digits, '_' or '-', not starting with '_' or '-'", s.Tag)
		}
		if !filepath.IsAbs(s.Guest) || strings.ContainsAny(s.Guest, "\x00\n") {
			return fmt.Errorf("share guest path %q must be an absolute path", s.Guest)
		}
		if seen[s.Guest] {
			return fmt.Errorf("two shares mount at %s", s.Guest)
		}
		seen[s.Guest] = true
	}
	return nil
}

// RenderWrapper returns the wrapper's text for c.
func RenderWrapper(c Contract) ([]byte, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	w := templates.Wrapper{ProjectConfig: c.ProjectConfig, User: c.User, UID: c.UID,
		AuthorizedKeysFile: c.AuthorizedKeysFile, HostName: c.HostName, Packages: c.Packages}
	for _, s := range c.Shares {
		w.Shares = append(w.Shares, templates.Share{Tag: s.Tag, Guest: s.Guest, ReadOnly: s.ReadOnly})
	}
	return templates.RenderWrapper(w)
}

// WriteWrapper writes the wrapper for c into dir (devvm's per-VM state, never
// the checkout) and returns its path, the file to pass to `guix system vm`.
// The file is replaced atomically, and only when its content changes, so its
// mtime tells when the contract last changed.
func WriteWrapper(dir string, c Contract) (string, error) {
	text, err := RenderWrapper(c)
	if err != nil {
		return "", err
	}
	if !filepath.IsAbs(dir) {
		return "", fmt.Errorf("internal: wrapper directory %q is not absolute", dir)
	}
	path := filepath.Join(dir, WrapperName)
	if old, err := os.ReadFile(path); err == nil && string(old) == string(text) {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, "."+WrapperName+".*")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(text); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return "", err
	}
	return path, nil
}
