// Package project finds the Guix files a checkout already has, so `devvm
// init` adopts them instead of writing its own: the operating-system file
// (and the 9p shares it mounts), channels.scm, and the packages file
// (manifest.scm or guix.scm, as `guix shell` picks it). It reads files; it
// never runs guix.
package project

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/devvm/devvm/launcher/guix"
)

// Found is what a checkout has.
type Found struct {
	// Config is the operating-system file, relative to the checkout, or "".
	Config string
	// OtherConfigs are further OS files, not adopted (reported to the user).
	OtherConfigs []string
	// Shares are Config's 9p file systems (tags and mount points kept).
	Shares []guix.Share
	// Channels is "channels.scm" when the checkout has one.
	Channels string
	// Packages is "manifest.scm" or else "guix.scm" when present: `guix
	// shell` without arguments loads the first of these it finds
	// (guix:guix/scripts/shell.scm), the manifest with -m, guix.scm with -D -f.
	Packages string
	// LoadPath is ".guix/modules" when the checkout has that directory (the
	// Guix manual's layout, loaded with `guix shell -L .guix/modules`).
	LoadPath []string
}

// notOS are files with a Guix role of their own, never an OS config.
var notOS = map[string]bool{"guix.scm": true, "manifest.scm": true, "channels.scm": true}

// preferred OS file names, in order; other *.scm files come after, sorted.
var preferred = []string{"dev-vm.scm", "vm.scm", "config.scm", "system.scm", "os.scm"}

// Detect looks at the top of the checkout dir (and .guix/, where the
// manual's layout keeps Guix files) for the project's Guix files.
func Detect(dir string) (*Found, error) {
	f := &Found{}
	var cands []string
	for _, sub := range []string{".", ".guix"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && sub != "." {
				continue
			}
			return nil, err
		}
		for _, e := range ents {
			name := filepath.Join(sub, e.Name())
			if filepath.Ext(name) != ".scm" || notOS[name] || !regular(filepath.Join(dir, name)) {
				continue
			}
			cands = append(cands, name)
		}
	}
	rank := func(n string) int {
		for i, p := range preferred {
			if n == p {
				return i
			}
		}
		return len(preferred)
	}
	sort.SliceStable(cands, func(i, j int) bool {
		if ri, rj := rank(cands[i]), rank(cands[j]); ri != rj {
			return ri < rj
		}
		return cands[i] < cands[j]
	})
	for _, c := range cands {
		oc, err := guix.ReadOSConfig(filepath.Join(dir, c))
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", c, err)
		}
		if !oc.DefinesOS {
			continue
		}
		if f.Config == "" {
			f.Config, f.Shares = c, oc.NineP
		} else {
			f.OtherConfigs = append(f.OtherConfigs, c)
		}
	}
	if regular(filepath.Join(dir, "channels.scm")) {
		f.Channels = "channels.scm"
	}
	for _, p := range []string{"manifest.scm", "guix.scm"} {
		if regular(filepath.Join(dir, p)) {
			f.Packages = p
			break
		}
	}
	if st, err := os.Stat(filepath.Join(dir, ".guix", "modules")); err == nil && st.IsDir() {
		f.LoadPath = []string{filepath.Join(".guix", "modules")}
	}
	return f, nil
}

// regular: an existing regular file (through symlinks: guix.scm is one in
// the manual's layout).
func regular(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}
