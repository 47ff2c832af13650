// Package copy copies files and directory trees between the host and a
// guest over an SSH connection devvm already verified (pinned host key), as
// `limactl copy` and `vagrant upload` do. It streams a tar archive through
// an exec session running the guest's own tar, so it needs no sftp-server:
// any sshd with a POSIX shell and tar (GNU tar in Guix System, busybox tar in
// small guests) will do.
//
// Paths follow `docker cp`: copying SRC to an existing directory DST puts it
// at DST/base(SRC); to a path that does not exist creates DST as the copy;
// a DST ending in "/" must be an existing directory. Relative guest paths
// are relative to the guest user's home. Symbolic links are copied as links,
// never followed; what comes from the guest is untrusted: entries leaving
// the destination, or going through a link, are refused.
package copy

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/devvm/devvm/launcher/sshx"
)

// Runner runs a guest shell command line (*sshx.Client is one).
type Runner interface {
	Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer, tty bool) (int, error)
}

// Options for Upload and Download.
type Options struct {
	// Tar is the guest's tar command (default "tar").
	Tar string
	// Warn, if set, is told about entries skipped (devices, sockets).
	Warn func(string)
}

func (o Options) tar() string {
	if o.Tar == "" {
		return "tar"
	}
	return o.Tar
}

func (o Options) warn(format string, a ...any) {
	if o.Warn != nil {
		o.Warn(fmt.Sprintf(format, a...))
	}
}

var q = func(s string) string { return sshx.ShellQuote([]string{s}) }

// Upload copies the host file or directory src to dst in the guest.
func Upload(ctx context.Context, r Runner, src, dst string, o Options) error {
	st, err := os.Lstat(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if dst == "" {
		dst = "."
	}
	kind, err := guestKind(ctx, r, dst)
	if err != nil {
		return err
	}
	dir, name, err := target(dst, kind, baseName(src), "guest", st.IsDir())
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(writeTree(pw, src, name, st))
	}()
	var stderr bytes.Buffer
	code, err := r.Run(ctx, fmt.Sprintf("cd %s && %s -xof -", q(dir), o.tar()), pr, io.Discard, &stderr, false)
	pr.Close()
	if err != nil {
		return fmt.Errorf("copy %s to the guest's %s: %w", src, dst, err)
	}
	if code != 0 {
		return fmt.Errorf("copy %s to the guest's %s: the guest's tar failed (exit %d): %s", src, dst, code, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// Download copies the guest file or directory src to dst on the host.
func Download(ctx context.Context, r Runner, src, dst string, o Options) error {
	if src == "" {
		return fmt.Errorf("copy from the guest: no path after ':'")
	}
	gsrc := strings.TrimRight(src, "/")
	if gsrc == "" {
		gsrc = "/"
	}
	kind, err := guestKind(ctx, r, gsrc)
	if err != nil {
		return err
	}
	if kind == kindNone || kind == kindNoParent {
		return fmt.Errorf("copy from the guest: %s does not exist in the guest", src)
	}
	if strings.HasSuffix(src, "/") && kind != kindDir {
		return fmt.Errorf("copy from the guest: %s is not a directory in the guest", src)
	}
	dir, name, err := target(dst, localKind(dst), path.Base(gsrc), "host", kind == kindDir)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := extract(pr, dir, path.Base(gsrc), name, o)
		if err != nil {
			cancel() // the guest's tar would block on a full window
		}
		io.Copy(io.Discard, pr)
		done <- err
	}()
	var stderr bytes.Buffer
	parent, base := path.Dir(gsrc), path.Base(gsrc)
	code, err := r.Run(ctx, fmt.Sprintf("cd %s && %s -cf - %s", q(parent), o.tar(), q(base)), nil, pw, &stderr, false)
	pw.Close()
	xerr := <-done
	switch {
	case xerr != nil:
		return fmt.Errorf("copy the guest's %s to %s: %w", src, dst, xerr)
	case err != nil:
		return fmt.Errorf("copy the guest's %s to %s: %w", src, dst, err)
	case code != 0:
		return fmt.Errorf("copy the guest's %s to %s: the guest's tar failed (exit %d): %s", src, dst, code, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// Kinds of a destination path.
const (
	kindDir      = "dir"
	kindOther    = "other"     // exists, not a directory
	kindNone     = "none"      // does not exist; its parent is a directory
	kindNoParent = "no-parent" // neither it nor its parent exists as a directory
)

// guestKind asks the guest what p is.
func guestKind(ctx context.Context, r Runner, p string) (string, error) {
	parent := path.Dir(strings.TrimRight(p, "/"))
	if strings.TrimRight(p, "/") == "" {
		parent = "/"
	}
	cmd := fmt.Sprintf(`if [ -d %[1]s ]; then echo %[3]s; elif [ -e %[1]s ] || [ -L %[1]s ]; then echo %[4]s; elif [ -d %[2]s ]; then echo %[5]s; else echo %[6]s; fi`,
		q(p), q(parent), kindDir, kindOther, kindNone, kindNoParent)
	var out, stderr bytes.Buffer
	code, err := r.Run(ctx, cmd, nil, &out, &stderr, false)
	if err != nil {
		return "", err
	}
	if code != 0 {
		return "", fmt.Errorf("looking at %s in the guest failed (exit %d): %s", p, code, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

func localKind(p string) string {
	if st, err := os.Stat(p); err == nil {
		if st.IsDir() {
			return kindDir
		}
		return kindOther
	}
	if _, err := os.Lstat(p); err == nil {
		return kindOther // a dangling link: never written through
	}
	parent := filepath.Dir(strings.TrimRight(p, "/"))
	if st, err := os.Stat(parent); err == nil && st.IsDir() {
		return kindNone
	}
	return kindNoParent
}

// target decides where a copy named base (a directory when srcDir) goes for
// a destination dst of the given kind: the directory to extract in and the
// top-level name there.
func target(dst, kind, base, side string, srcDir bool) (dir, name string, err error) {
	switch {
	case kind == kindDir:
		return dst, base, nil
	case strings.HasSuffix(dst, "/"):
		return "", "", fmt.Errorf("%s is not a directory on the %s", dst, side)
	case kind == kindNoParent:
		return "", "", fmt.Errorf("the directory of %s does not exist on the %s", dst, side)
	case kind == kindOther && srcDir:
		return "", "", fmt.Errorf("cannot copy a directory onto the file %s on the %s", dst, side)
	}
	if side == "guest" {
		return path.Dir(dst), path.Base(dst), nil
	}
	return filepath.Dir(dst), filepath.Base(dst), nil
}

func baseName(p string) string {
	b := filepath.Base(filepath.Clean(p))
	if b == "/" || b == "." {
		return "root"
	}
	return b
}

// writeTree writes src as a tar archive whose top-level entry is name.
// Links are stored as links. The GNU format keeps long names and big files
// readable by busybox tar, and times are whole seconds so no PAX header is
// needed.
func writeTree(w io.Writer, src, name string, st fs.FileInfo) error {
	tw := tar.NewWriter(w)
	add := func(p, rel string, info fs.FileInfo) error {
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			link = l
		} else if !info.Mode().IsRegular() && !info.IsDir() {
			return fmt.Errorf("%s is neither a file, a directory nor a link; not copied", p)
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name = rel
		if info.IsDir() {
			h.Name += "/"
		}
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		h.Format = tar.FormatGNU
		h.ModTime = info.ModTime().Truncate(time.Second)
		h.AccessTime, h.ChangeTime = time.Time{}, time.Time{}
		h.Mode &= 0o777
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.CopyN(tw, f, h.Size); err != nil {
				return fmt.Errorf("%s: %w (did it change while being copied?)", p, err)
			}
		}
		return nil
	}
	if !st.IsDir() {
		if err := add(src, name, st); err != nil {
			return err
		}
		return tw.Close()
	}
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		return add(p, path.Join(name, filepath.ToSlash(rel)), info)
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// extract writes the archive's entries under dir, renaming the top-level
// entry top to name. The archive comes from the guest: an entry outside top,
// with "..", absolute, or whose path goes through a link is refused, and
// an existing link at an entry's place is replaced, never written through.
func extract(r io.Reader, dir, top, name string, o Options) error {
	tr := tar.NewReader(r)
	type dirTime struct {
		path string
		t    time.Time
	}
	var dirs []dirTime
	seen := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the guest's archive: %w", err)
		}
		rel := strings.TrimSuffix(path.Clean(h.Name), "/")
		if rel != top && !strings.HasPrefix(rel, top+"/") || strings.HasPrefix(h.Name, "/") || hasDotDot(h.Name) {
			return fmt.Errorf("the guest's archive has an entry %q outside %s: refused", h.Name, top)
		}
		rel = name + strings.TrimPrefix(rel, top)
		dst := filepath.Join(dir, filepath.FromSlash(rel))
		if err := noLinkBetween(dir, filepath.Dir(dst)); err != nil {
			return err
		}
		seen = true
		mode := fs.FileMode(h.Mode) & 0o777
		switch h.Typeflag {
		case tar.TypeDir:
			if st, err := os.Lstat(dst); err == nil && !st.IsDir() {
				if err := os.Remove(dst); err != nil {
					return err
				}
			}
			if err := os.Mkdir(dst, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
			dirs = append(dirs, dirTime{dst, h.ModTime})
			if err := os.Chmod(dst, mode|0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := writeFile(dst, tr, mode, h.Size); err != nil {
				return err
			}
			os.Chtimes(dst, h.ModTime, h.ModTime)
		case tar.TypeSymlink:
			if err := removeNonDir(dst); err != nil {
				return err
			}
			if err := os.Symlink(h.Linkname, dst); err != nil {
				return err
			}
		case tar.TypeLink:
			lrel := strings.TrimSuffix(path.Clean(h.Linkname), "/")
			if lrel != top && !strings.HasPrefix(lrel, top+"/") || hasDotDot(h.Linkname) {
				return fmt.Errorf("the guest's archive links %q to %q outside %s: refused", h.Name, h.Linkname, top)
			}
			old := filepath.Join(dir, filepath.FromSlash(name+strings.TrimPrefix(lrel, top)))
			if err := noLinkBetween(dir, filepath.Dir(old)); err != nil {
				return err
			}
			if st, err := os.Lstat(old); err != nil || !st.Mode().IsRegular() {
				return fmt.Errorf("the guest's archive links %q to %q, which is not a file copied before: refused", h.Name, h.Linkname)
			}
			if err := removeNonDir(dst); err != nil {
				return err
			}
			if err := os.Link(old, dst); err != nil {
				return err
			}
		default:
			o.warn("skipped %s: not a file, a directory or a link (tar type %q)", h.Name, h.Typeflag)
		}
	}
	if !seen {
		return fmt.Errorf("the guest's archive is empty")
	}
	// Directory times last: writing into a directory changes its time.
	for i := len(dirs) - 1; i >= 0; i-- {
		os.Chtimes(dirs[i].path, dirs[i].t, dirs[i].t)
	}
	return nil
}

func hasDotDot(name string) bool {
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return true
		}
	}
	return false
}

// noLinkBetween checks that every directory from root (excluded) down to p
// is a real directory, not a link (nor missing).
func noLinkBetween(root, p string) error {
	rel, err := filepath.Rel(root, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return fmt.Errorf("%s is outside %s: refused", p, root)
	}
	if rel == "." {
		return nil
	}
	cur := root
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		cur = filepath.Join(cur, part)
		st, err := os.Lstat(cur)
		if err != nil {
			return fmt.Errorf("the guest's archive writes into %s, which it did not create first: %w", cur, err)
		}
		if !st.IsDir() {
			return fmt.Errorf("the guest's archive writes through %s, which is not a directory (a link?): refused", cur)
		}
	}
	return nil
}

// removeNonDir removes what is at p unless it is a directory (or nothing).
func removeNonDir(p string) error {
	st, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.IsDir() {
		return fmt.Errorf("%s is a directory: not replaced by a file", p)
	}
	return os.Remove(p)
}

// writeFile writes size bytes of r to p, replacing a link at p rather than
// writing through it.
func writeFile(p string, r io.Reader, mode fs.FileMode, size int64) error {
	if err := removeNonDir(p); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, r, size); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Chmod(p, mode)
}
