package main

import (
	"path"
	"path/filepath"
	"strings"

	"github.com/devvm/devvm/launcher/vmfile"
)

// guestWorkdir maps the host directory dir to where a guest command starts,
// as Multipass and Lima do: under the share whose host directory is the
// longest prefix of dir (host checkout/src/x → guest /mnt/<name>/src/x);
// outside every share, the guest path of the share of the checkout itself
// (or of the first share); with no share, "" (the home). Symbolic links in
// the host paths are resolved first, so a checkout reached through a link
// still maps.
func guestWorkdir(vf *vmfile.Vmfile, dir string) string {
	if len(vf.Shares) == 0 {
		return ""
	}
	dir = realPath(dir)
	checkout := realPath(vf.Dir)
	best, bestLen, root := "", -1, ""
	for _, s := range vf.Shares {
		host := realPath(vf.Resolve(s.Host))
		if host == checkout && root == "" {
			root = s.Guest
		}
		rel, err := filepath.Rel(host, dir)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") || len(host) <= bestLen {
			continue
		}
		best, bestLen = path.Join(s.Guest, filepath.ToSlash(rel)), len(host)
	}
	switch {
	case bestLen >= 0:
		return best
	case root != "":
		return root
	}
	return vf.Shares[0].Guest
}

// realPath is p with symbolic links resolved, or p itself when that fails.
func realPath(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return filepath.Clean(p)
}
