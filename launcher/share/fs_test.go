package share

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hugelgupf/p9/linux"
	"github.com/hugelgupf/p9/p9"
	"golang.org/x/sys/unix"
)

func TestCreateWriteReadRoundTrip(t *testing.T) {
	l := newLayout(t)
	umaskBefore := processUmask(t)
	root := serve(t, l.root, Options{}, 64<<10)

	_, dir, err := root.Walk(nil)
	if err != nil {
		t.Fatal(err)
	}
	f, _, _, err := dir.Create("hello.txt", p9.ReadWrite, 0o666, p9.NoUID, p9.NoGID)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 20000) // 320 KB, several messages
	if n, err := f.WriteAt(data, 0); err != nil || n != len(data) {
		t.Fatalf("write: n=%d err=%v", n, err)
	}
	f.Close()

	host, err := os.ReadFile(filepath.Join(l.root, "hello.txt"))
	if err != nil || !bytes.Equal(host, data) {
		t.Fatalf("host content differs (err %v, %d bytes)", err, len(host))
	}
	fi, _ := os.Stat(filepath.Join(l.root, "hello.txt"))
	if fi.Mode().Perm() != 0o666 {
		t.Fatalf("created with mode %v, want 0666 exactly (process umask must not apply)", fi.Mode())
	}

	rf := walk(t, root, "hello.txt")
	if _, _, err := rf.Open(p9.ReadOnly); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data)+10)
	n, err := rf.ReadAt(got, 0)
	if err != nil && err != io.EOF {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got[:n], data) {
		t.Fatalf("read back %d bytes, differs from the %d written", n, len(data))
	}

	// Mkdir with an explicit mode, including sticky.
	if _, err := root.Mkdir("sub", 0o1777, p9.NoUID, p9.NoGID); err != nil {
		t.Fatalf("mkdir: %v", err)
	}
	fi, _ = os.Stat(filepath.Join(l.root, "sub"))
	if fi.Mode()&(os.ModePerm|os.ModeSticky) != 0o777|os.ModeSticky {
		t.Fatalf("mkdir mode %v, want drwxrwxrwt", fi.Mode())
	}
	if got := processUmask(t); got != umaskBefore {
		t.Fatalf("process umask changed from %s to %s", umaskBefore, got)
	}
}

func TestSymlinkEscapes(t *testing.T) {
	l := newLayout(t)
	must(t, os.Symlink(l.secret, filepath.Join(l.root, "abs")))
	must(t, os.Symlink("../outside/secret", filepath.Join(l.root, "rel")))
	must(t, os.Mkdir(filepath.Join(l.root, "a"), 0o755))
	must(t, os.Mkdir(filepath.Join(l.root, "a", "b"), 0o755))
	must(t, os.Symlink("../../../outside/secret", filepath.Join(l.root, "a", "b", "chain")))
	must(t, os.Symlink(l.outside, filepath.Join(l.root, "absdir")))
	must(t, os.Symlink("../outside", filepath.Join(l.root, "reldir")))
	root := serve(t, l.root, Options{}, 64<<10)

	// A symlink created by the client pointing outside: stored verbatim.
	if _, err := root.Symlink(l.secret, "mine", p9.NoUID, p9.NoGID); err != nil {
		t.Fatalf("symlink: %v", err)
	}
	if target, _ := os.Readlink(filepath.Join(l.root, "mine")); target != l.secret {
		t.Fatalf("symlink target %q, want %q", target, l.secret)
	}

	for _, name := range [][]string{{"abs"}, {"rel"}, {"a", "b", "chain"}, {"mine"}} {
		t.Run(strings.Join(name, "/"), func(t *testing.T) {
			qids, f, err := root.Walk(name)
			if err != nil {
				t.Fatalf("walk: %v", err)
			}
			defer f.Close()
			if qids[len(qids)-1].Type != p9.TypeSymlink {
				t.Fatalf("walk onto a symlink gave QID type %v, want symlink", qids[len(qids)-1].Type)
			}
			if _, _, err := f.Open(p9.ReadOnly); err == nil {
				t.Fatal("opening a symlink fid succeeded")
			}
			wantErrno(t, "truncate", f.SetAttr(p9.SetAttrMask{Size: true}, p9.SetAttr{Size: 0}), linux.EINVAL)
			wantErrno(t, "chmod", f.SetAttr(p9.SetAttrMask{Permissions: true}, p9.SetAttr{Permissions: 0o777}), linux.EOPNOTSUPP)
			// Times apply to the link itself.
			if err := f.SetAttr(p9.SetAttrMask{MTime: true, MTimeNotSystemTime: true}, p9.SetAttr{MTimeSeconds: 1e9}); err != nil {
				t.Fatalf("lutimes: %v", err)
			}
			fi, err := os.Lstat(filepath.Join(append([]string{l.root}, name...)...))
			if err != nil || fi.ModTime().Unix() != 1e9 {
				t.Fatalf("symlink mtime not set (%v, %v)", fi.ModTime(), err)
			}
			// Walking through the symlink is refused by the server.
			if _, _, err := root.Walk(append(append([]string{}, name...), "x")); err == nil {
				t.Fatal("walk through a symlink succeeded")
			}
			target, err := f.Readlink()
			if err != nil || target == "" {
				t.Fatalf("readlink: %q, %v", target, err)
			}
			l.checkOutside(t)
		})
	}

	for _, d := range []string{"absdir", "reldir"} {
		if _, _, err := root.Walk([]string{d, "secret"}); err == nil {
			t.Fatalf("walk %s/secret succeeded", d)
		}
		f := walk(t, root, d)
		if _, _, _, err := f.Create("new", p9.ReadWrite, 0o644, p9.NoUID, p9.NoGID); err == nil {
			t.Fatalf("create through %s succeeded", d)
		}
		if _, err := f.Mkdir("newdir", 0o755, p9.NoUID, p9.NoGID); err == nil {
			t.Fatalf("mkdir through %s succeeded", d)
		}
	}
	l.checkOutside(t)
}

// swapDir replaces root/name (a directory) with a symlink to target.
func swapDir(t *testing.T, root, name, target string) {
	t.Helper()
	must(t, os.Rename(filepath.Join(root, name), filepath.Join(root, name+".moved")))
	must(t, os.Symlink(target, filepath.Join(root, name)))
}

func TestSymlinkSwappedInAfterWalk(t *testing.T) {
	for _, target := range []string{"abs", "rel"} {
		t.Run(target, func(t *testing.T) {
			l := newLayout(t)
			must(t, os.Mkdir(filepath.Join(l.root, "d"), 0o755))
			writeFile(t, filepath.Join(l.root, "d", "secret"), "inside")
			writeFile(t, filepath.Join(l.root, "d", "other"), "inside")
			root := serve(t, l.root, Options{}, 64<<10)

			d := walk(t, root, "d")
			dsecret := walk(t, root, "d", "secret")
			dOpenable := walk(t, root, "d")
			linkTarget := l.outside
			if target == "rel" {
				linkTarget = "../outside"
			}
			swapDir(t, l.root, "d", linkTarget)

			// Every operation through the stale fids must be refused with
			// EACCES (os.Root's escape check), and nothing outside changes.
			_, _, _, err := d.Create("created", p9.ReadWrite, 0o644, p9.NoUID, p9.NoGID)
			wantErrno(t, "create", err, linux.EACCES)
			_, err = d.Mkdir("dir", 0o755, p9.NoUID, p9.NoGID)
			wantErrno(t, "mkdir", err, linux.EACCES)
			_, err = d.Symlink("x", "sl", p9.NoUID, p9.NoGID)
			wantErrno(t, "symlink", err, linux.EACCES)
			wantErrno(t, "unlink", d.UnlinkAt("secret", 0), linux.EACCES)
			wantErrno(t, "rename out", d.RenameAt("secret", root, "stolen"), linux.EACCES)
			wantErrno(t, "rename in", root.RenameAt("d.moved", d, "planted"), linux.EACCES)
			wantErrno(t, "link", root.Link(dsecret, "hard"), linux.EACCES)
			_, _, err = d.Walk([]string{"secret"})
			wantErrno(t, "walk", err, linux.EACCES)
			wantErrno(t, "truncate", dsecret.SetAttr(p9.SetAttrMask{Size: true}, p9.SetAttr{}), linux.EACCES)
			wantErrno(t, "chmod", dsecret.SetAttr(p9.SetAttrMask{Permissions: true}, p9.SetAttr{Permissions: 0o600}), linux.EACCES)
			wantErrno(t, "chtimes", dsecret.SetAttr(p9.SetAttrMask{MTime: true}, p9.SetAttr{}), linux.EACCES)
			_, _, _, err = dsecret.GetAttr(p9.AttrMaskAll)
			wantErrno(t, "getattr", err, linux.EACCES)
			_, _, err = dsecret.Open(p9.ReadWrite)
			wantErrno(t, "open file", err, linux.EACCES)
			_, _, err = dOpenable.Open(p9.ReadOnly)
			wantErrno(t, "open dir", err, linux.EACCES)
			l.checkOutside(t)
			if _, err := os.Lstat(filepath.Join(l.root, "stolen")); err == nil {
				t.Fatal("a file from outside was renamed into the root")
			}
		})
	}
}

func TestSymlinkSwappedAfterOpen(t *testing.T) {
	l := newLayout(t)
	must(t, os.Mkdir(filepath.Join(l.root, "d"), 0o755))
	root := serve(t, l.root, Options{}, 64<<10)
	d := walk(t, root, "d")
	if _, _, err := d.Open(p9.ReadOnly); err != nil {
		t.Fatal(err)
	}
	swapDir(t, l.root, "d", l.outside)
	// The open descriptor still refers to the original directory, never
	// to the outside one.
	ents, err := d.Readdir(0, 4096)
	if err != nil {
		t.Fatalf("readdir: %v", err)
	}
	if len(ents) != 0 {
		t.Fatalf("readdir of the original (empty) directory listed %v", ents)
	}
	l.checkOutside(t)
}

func TestHardLinkToOutsideRefused(t *testing.T) {
	l := newLayout(t)
	must(t, os.Symlink(l.secret, filepath.Join(l.root, "esc")))
	root := serve(t, l.root, Options{}, 64<<10)
	esc := walk(t, root, "esc")
	// Link to the symlink fid links the symlink itself, never its target.
	if err := root.Link(esc, "hard"); err != nil {
		t.Fatalf("link: %v", err)
	}
	fi, err := os.Lstat(filepath.Join(l.root, "hard"))
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("hard link is not a link to the symlink: %v %v", fi, err)
	}
	l.checkOutside(t) // includes the sentinel's link count
}

func TestRenameAcrossBoundaryRefused(t *testing.T) {
	l := newLayout(t)
	must(t, os.Mkdir(filepath.Join(l.root, "d"), 0o755))
	must(t, os.Mkdir(filepath.Join(l.root, "keep"), 0o755))
	writeFile(t, filepath.Join(l.root, "mine"), "inside")
	must(t, os.Symlink(l.outside, filepath.Join(l.root, "out")))
	root := serve(t, l.root, Options{}, 64<<10)

	// "out" is a symlink fid: the server refuses it as a directory.
	out := walk(t, root, "out")
	if err := root.RenameAt("mine", out, "x"); err == nil {
		t.Fatal("rename into a symlink fid succeeded")
	}
	d := walk(t, root, "d")
	swapDir(t, l.root, "d", l.outside)
	wantErrno(t, "rename into outside", root.RenameAt("mine", d, "mine"), linux.EACCES)
	wantErrno(t, "rename from outside", d.RenameAt("secret", root, "secret"), linux.EACCES)
	// Renaming the symlink itself moves the link, not its target.
	keep := walk(t, root, "keep")
	if err := root.RenameAt("out", keep, "out2"); err != nil {
		t.Fatalf("rename of a symlink: %v", err)
	}
	if fi, err := os.Lstat(filepath.Join(l.root, "keep", "out2")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("renamed symlink: %v %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(l.root, "mine")); err != nil {
		t.Fatalf("file inside vanished: %v", err)
	}
	l.checkOutside(t)
}

func TestTruncateSymlinkToOutside(t *testing.T) {
	l := newLayout(t)
	root := serve(t, l.root, Options{}, 64<<10)
	if _, err := root.Symlink(l.secret, "leaf", p9.NoUID, p9.NoGID); err != nil {
		t.Fatal(err)
	}
	leaf := walk(t, root, "leaf")
	// The verified localfs escape: Tsetattr{Size: 0} on such a link.
	if err := leaf.SetAttr(p9.SetAttrMask{Size: true}, p9.SetAttr{Size: 0}); err == nil {
		t.Fatal("truncate through a symlink succeeded")
	}
	// Also a regular file replaced by the link after the walk.
	writeFile(t, filepath.Join(l.root, "reg"), "data")
	reg := walk(t, root, "reg")
	must(t, os.Remove(filepath.Join(l.root, "reg")))
	must(t, os.Symlink(l.secret, filepath.Join(l.root, "reg")))
	wantErrno(t, "truncate swapped", reg.SetAttr(p9.SetAttrMask{Size: true}, p9.SetAttr{Size: 0}), linux.EACCES)
	l.checkOutside(t)
}

func readAllDir(t *testing.T, d p9.File, count uint32) []p9.Dirent {
	t.Helper()
	var all []p9.Dirent
	var off uint64
	for {
		ents, err := d.Readdir(off, count)
		if err != nil {
			t.Fatalf("readdir at %d: %v", off, err)
		}
		if len(ents) == 0 {
			return all
		}
		all = append(all, ents...)
		off = ents[len(ents)-1].Offset
	}
}

func TestReaddirLarge(t *testing.T) {
	l := newLayout(t)
	const n = 5000
	for i := range n {
		writeFile(t, filepath.Join(l.root, fmt.Sprintf("file-with-a-longish-name-%05d", i)), "")
	}
	must(t, os.Mkdir(filepath.Join(l.root, "zdir"), 0o755))
	must(t, os.Symlink("zdir", filepath.Join(l.root, "zlink")))
	for _, msize := range []uint32{8 << 10, 1 << 20} {
		t.Run(fmt.Sprint(msize), func(t *testing.T) {
			root := serve(t, l.root, Options{}, msize)
			d := walk(t, root)
			if _, _, err := d.Open(p9.ReadOnly); err != nil {
				t.Fatal(err)
			}
			// The Linux client asks for msize minus the 9P read header.
			ents := readAllDir(t, d, msize-24)
			seen := map[string]bool{}
			for _, e := range ents {
				if seen[e.Name] {
					t.Fatalf("duplicate entry %q", e.Name)
				}
				seen[e.Name] = true
			}
			if len(seen) != n+2 {
				t.Fatalf("listed %d entries, want %d", len(seen), n+2)
			}
			for _, e := range ents {
				var want uint8 = unix.DT_REG
				switch e.Name {
				case "zdir":
					want = unix.DT_DIR
				case "zlink":
					want = unix.DT_LNK
				}
				if uint8(e.Type) != want {
					t.Fatalf("%s: dirent type %d, want %d", e.Name, e.Type, want)
				}
			}
			zd := ents[len(ents)-1]
			for _, e := range ents {
				if e.Name == "zdir" {
					zd = e
				}
			}
			qids, _, err := root.Walk([]string{"zdir"})
			if err != nil || qids[0].Path != zd.QID.Path {
				t.Fatalf("dirent QID path %d differs from walk QID %v (%v)", zd.QID.Path, qids, err)
			}
		})
	}
}

func TestReadOnly(t *testing.T) {
	l := newLayout(t)
	writeFile(t, filepath.Join(l.root, "f"), "content")
	must(t, os.Mkdir(filepath.Join(l.root, "d"), 0o755))
	before := takeSnapshot(t, filepath.Join(l.root, "f"))
	root := serve(t, l.root, Options{ReadOnly: true}, 64<<10)

	f := walk(t, root, "f")
	_, _, _, err := walk(t, root).Create("new", p9.ReadWrite, 0o644, p9.NoUID, p9.NoGID)
	wantErrno(t, "create", err, linux.EROFS)
	_, err = root.Mkdir("nd", 0o755, p9.NoUID, p9.NoGID)
	wantErrno(t, "mkdir", err, linux.EROFS)
	_, err = root.Symlink("f", "sl", p9.NoUID, p9.NoGID)
	wantErrno(t, "symlink", err, linux.EROFS)
	wantErrno(t, "link", root.Link(f, "hl"), linux.EROFS)
	_, err = root.Mknod("nod", p9.ModeNamedPipe|0o644, 0, 0, p9.NoUID, p9.NoGID)
	wantErrno(t, "mknod", err, linux.EROFS)
	wantErrno(t, "rename", root.RenameAt("f", root, "g"), linux.EROFS)
	wantErrno(t, "unlink", root.UnlinkAt("f", 0), linux.EROFS)
	wantErrno(t, "rmdir", root.UnlinkAt("d", unix.AT_REMOVEDIR), linux.EROFS)
	for _, m := range []p9.SetAttrMask{{Size: true}, {Permissions: true}, {MTime: true}, {ATime: true}, {UID: true}} {
		wantErrno(t, "setattr "+m.String(), f.SetAttr(m, p9.SetAttr{Permissions: 0o600, UID: 0}), linux.EROFS)
	}
	for _, mode := range []p9.OpenFlags{p9.WriteOnly, p9.ReadWrite, p9.ReadOnly | p9.OpenFlags(unix.O_TRUNC)} {
		_, _, err := walk(t, root, "f").Open(mode)
		wantErrno(t, "open "+mode.String(), err, linux.EROFS)
	}
	// Reading still works.
	rf := walk(t, root, "f")
	if _, _, err := rf.Open(p9.ReadOnly); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, _ := rf.ReadAt(buf, 0); string(buf[:n]) != "content" {
		t.Fatalf("read %q", buf[:n])
	}

	// The p9 client cannot send xattr writes nor writes on a read-only fid,
	// so call the server-side File directly.
	att, closer, err := Attacher(l.root, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	sf, err := att.Attach()
	if err != nil {
		t.Fatal(err)
	}
	_, sfile, err := sf.Walk([]string{"f"})
	if err != nil {
		t.Fatal(err)
	}
	wantErrno(t, "setxattr", sfile.SetXattr("user.x", []byte("v"), 0), linux.EROFS)
	wantErrno(t, "removexattr", sfile.RemoveXattr("user.x"), linux.EROFS)
	if _, _, err := sfile.Open(p9.ReadOnly); err != nil {
		t.Fatal(err)
	}
	_, err = sfile.WriteAt([]byte("x"), 0)
	wantErrno(t, "write", err, linux.EROFS)

	after := takeSnapshot(t, filepath.Join(l.root, "f"))
	if !bytes.Equal(after.data, before.data) || after.mode != before.mode || !after.mtime.Equal(before.mtime) {
		t.Fatalf("file changed in read-only mode: %+v -> %+v", before, after)
	}
	if got := listDir(t, l.root); strings.Join(got, ",") != "d,f" {
		t.Fatalf("root entries changed in read-only mode: %v", got)
	}
}

func TestChmodChtimes(t *testing.T) {
	l := newLayout(t)
	p := filepath.Join(l.root, "f")
	writeFile(t, p, "x")
	root := serve(t, l.root, Options{}, 64<<10)
	f := walk(t, root, "f")

	if err := f.SetAttr(p9.SetAttrMask{Permissions: true}, p9.SetAttr{Permissions: 0o751}); err != nil {
		t.Fatalf("chmod: %v", err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o751 {
		t.Fatalf("mode %v, want 0751", fi.Mode())
	}
	// setuid/setgid are dropped.
	if err := f.SetAttr(p9.SetAttrMask{Permissions: true}, p9.SetAttr{Permissions: 0o6755}); err != nil {
		t.Fatalf("chmod: %v", err)
	}
	if fi, _ := os.Stat(p); fi.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 || fi.Mode().Perm() != 0o755 {
		t.Fatalf("mode %v, want 0755 without setuid/setgid", fi.Mode())
	}

	mtime := time.Date(2020, 1, 2, 3, 4, 5, 600, time.UTC)
	atime := time.Date(2019, 1, 2, 3, 4, 5, 0, time.UTC)
	err := f.SetAttr(p9.SetAttrMask{MTime: true, MTimeNotSystemTime: true, ATime: true, ATimeNotSystemTime: true},
		p9.SetAttr{MTimeSeconds: uint64(mtime.Unix()), MTimeNanoSeconds: uint64(mtime.Nanosecond()),
			ATimeSeconds: uint64(atime.Unix())})
	if err != nil {
		t.Fatalf("chtimes: %v", err)
	}
	fi, _ := os.Stat(p)
	st := fi.Sys().(*syscall.Stat_t)
	if !fi.ModTime().Equal(mtime) || st.Atim.Sec != atime.Unix() {
		t.Fatalf("mtime %v atime %d, want %v %d", fi.ModTime(), st.Atim.Sec, mtime, atime.Unix())
	}
	// "now" for mtime only; atime must stay.
	if err := f.SetAttr(p9.SetAttrMask{MTime: true}, p9.SetAttr{}); err != nil {
		t.Fatalf("touch: %v", err)
	}
	fi, _ = os.Stat(p)
	st = fi.Sys().(*syscall.Stat_t)
	if !fi.ModTime().After(mtime) || st.Atim.Sec != atime.Unix() {
		t.Fatalf("after touch: mtime %v (want later than %v), atime %d (want %d)", fi.ModTime(), mtime, st.Atim.Sec, atime.Unix())
	}
	_, valid, attr, err := f.GetAttr(p9.AttrMaskAll)
	if err != nil || !valid.MTime || int64(attr.MTimeSeconds) != fi.ModTime().Unix() {
		t.Fatalf("getattr mtime %d, host %v (%v)", attr.MTimeSeconds, fi.ModTime(), err)
	}

	// Truncate via an open read-only fid and via a plain fid.
	if err := f.SetAttr(p9.SetAttrMask{Size: true}, p9.SetAttr{Size: 10}); err != nil {
		t.Fatalf("truncate: %v", err)
	}
	if fi, _ := os.Stat(p); fi.Size() != 10 {
		t.Fatalf("size %d, want 10", fi.Size())
	}
	of := walk(t, root, "f")
	if _, _, err := of.Open(p9.ReadOnly); err != nil {
		t.Fatal(err)
	}
	if err := of.SetAttr(p9.SetAttrMask{Size: true}, p9.SetAttr{Size: 3}); err != nil {
		t.Fatalf("truncate open fid: %v", err)
	}
	if fi, _ := os.Stat(p); fi.Size() != 3 {
		t.Fatalf("size %d, want 3", fi.Size())
	}

	// Ownership: a chown to the current owner succeeds; to another owner
	// only when running as root.
	_, _, attr, _ = f.GetAttr(p9.AttrMaskAll)
	if err := f.SetAttr(p9.SetAttrMask{UID: true, GID: true}, p9.SetAttr{UID: attr.UID, GID: attr.GID}); err != nil {
		t.Fatalf("chown to the current owner: %v", err)
	}
	err = f.SetAttr(p9.SetAttrMask{UID: true}, p9.SetAttr{UID: attr.UID + 1})
	if os.Geteuid() == 0 {
		if err != nil {
			t.Fatalf("chown as root: %v", err)
		}
		if fi, _ := os.Stat(p); fi.Sys().(*syscall.Stat_t).Uid != uint32(attr.UID+1) {
			t.Fatal("chown as root did not change the owner")
		}
	} else {
		wantErrno(t, "chown as non-root", err, linux.EPERM)
	}
}

func TestErrnos(t *testing.T) {
	l := newLayout(t)
	writeFile(t, filepath.Join(l.root, "f"), "x")
	must(t, os.Mkdir(filepath.Join(l.root, "d"), 0o755))
	root := serve(t, l.root, Options{}, 64<<10)

	_, _, err := root.Walk([]string{"missing"})
	wantErrno(t, "walk missing", err, linux.ENOENT)
	_, err = root.Mkdir("d", 0o755, p9.NoUID, p9.NoGID)
	wantErrno(t, "mkdir existing", err, linux.EEXIST)
	_, _, _, err = walk(t, root).Create("f", p9.ReadWrite, 0o644, p9.NoUID, p9.NoGID)
	wantErrno(t, "create existing", err, linux.EEXIST)
	wantErrno(t, "unlink dir", root.UnlinkAt("d", 0), linux.EISDIR)
	wantErrno(t, "rmdir file", root.UnlinkAt("f", unix.AT_REMOVEDIR), linux.ENOTDIR)
	wantErrno(t, "unlink missing", root.UnlinkAt("missing", 0), linux.ENOENT)
	_, _, err = walk(t, root, "d").Open(p9.ReadWrite)
	wantErrno(t, "open dir for writing", err, linux.EISDIR)
	_, err = root.Mknod("fifo", p9.ModeNamedPipe|0o644, 0, 0, p9.NoUID, p9.NoGID)
	wantErrno(t, "mknod", err, linux.EPERM)
	_, _, err = root.Walk([]string{".."})
	wantErrno(t, "walk ..", err, linux.EINVAL)

	if err := root.UnlinkAt("f", 0); err != nil {
		t.Fatalf("unlink: %v", err)
	}
	if err := root.UnlinkAt("d", unix.AT_REMOVEDIR); err != nil {
		t.Fatalf("rmdir: %v", err)
	}
	if got := listDir(t, l.root); len(got) != 0 {
		t.Fatalf("root not empty after unlink/rmdir: %v", got)
	}
}

func TestQIDsStable(t *testing.T) {
	l := newLayout(t)
	p := filepath.Join(l.root, "f")
	writeFile(t, p, "x")
	root := serve(t, l.root, Options{}, 64<<10)
	q1, _, err := root.Walk([]string{"f"})
	if err != nil {
		t.Fatal(err)
	}
	q2, f, err := root.Walk([]string{"f"})
	if err != nil {
		t.Fatal(err)
	}
	q3, _, _, err := f.GetAttr(p9.AttrMaskAll)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	ino := fi.Sys().(*syscall.Stat_t).Ino
	if q1[0].Path != ino || q2[0].Path != ino || q3.Path != ino {
		t.Fatalf("QID paths %d %d %d, want the inode %d each time", q1[0].Path, q2[0].Path, q3.Path, ino)
	}
}

func TestRenameKeepsFidsValid(t *testing.T) {
	l := newLayout(t)
	must(t, os.Mkdir(filepath.Join(l.root, "d"), 0o755))
	writeFile(t, filepath.Join(l.root, "d", "f"), "payload")
	root := serve(t, l.root, Options{}, 64<<10)
	f := walk(t, root, "d", "f")
	if err := root.RenameAt("d", root, "e"); err != nil {
		t.Fatalf("rename: %v", err)
	}
	if _, _, err := f.Open(p9.ReadOnly); err != nil {
		t.Fatalf("open after the parent was renamed: %v", err)
	}
	buf := make([]byte, 16)
	if n, _ := f.ReadAt(buf, 0); string(buf[:n]) != "payload" {
		t.Fatalf("read %q", buf[:n])
	}
}

func TestUmaskUnchangedAfterServing(t *testing.T) {
	before := processUmask(t)
	l := newLayout(t)
	root := serve(t, l.root, Options{}, 64<<10)
	if _, err := root.Mkdir("x", 0o700, p9.NoUID, p9.NoGID); err != nil {
		t.Fatal(err)
	}
	walk(t, root, "x")
	if after := processUmask(t); after != before {
		t.Fatalf("umask changed from %s to %s", before, after)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestChownWithoutRootIsEPERM(t *testing.T) {
	l := newLayout(t)
	p := filepath.Join(l.root, "f")
	writeFile(t, p, "x")
	att, closer, err := Attacher(l.root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	att.(*fsys).isRoot = false // as when devvm runs as a normal user
	rf, err := att.Attach()
	if err != nil {
		t.Fatal(err)
	}
	_, f, err := rf.Walk([]string{"f"})
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	uid := fi.Sys().(*syscall.Stat_t).Uid
	wantErrno(t, "chown", f.SetAttr(p9.SetAttrMask{UID: true}, p9.SetAttr{UID: p9.UID(uid + 1)}), linux.EPERM)
	if err := f.SetAttr(p9.SetAttrMask{UID: true}, p9.SetAttr{UID: p9.UID(uid)}); err != nil {
		t.Fatalf("chown to the current owner: %v", err)
	}
	if fi, _ := os.Stat(p); fi.Sys().(*syscall.Stat_t).Uid != uid {
		t.Fatal("owner changed")
	}
}

// TestOpenTwiceOnOneFile calls Open concurrently on one server-side file, as
// two concurrent Tlopen on one fid do (p9.Server checks its "opened" flag
// under a shared lock and sets it after Open returns): one wins, the others
// get EINVAL, and no descriptor is left behind.
func TestOpenTwiceOnOneFile(t *testing.T) {
	l := newLayout(t)
	writeFile(t, filepath.Join(l.root, "f"), "content")
	att, closer, err := Attacher(l.root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	rf, err := att.Attach()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(l.root, "f")
	before := openFDs(t, path)
	_, f, err := rf.Walk([]string{"f"})
	if err != nil {
		t.Fatal(err)
	}
	const n = 16
	errs := make(chan error, n)
	start := make(chan struct{})
	for range n {
		go func() {
			<-start
			_, _, err := f.Open(p9.ReadOnly)
			errs <- err
		}()
	}
	close(start)
	ok := 0
	for range n {
		if err := <-errs; err == nil {
			ok++
		} else {
			wantErrno(t, "second open", err, linux.EINVAL)
		}
	}
	if ok != 1 {
		t.Fatalf("%d of %d concurrent opens succeeded, want 1", ok, n)
	}
	buf := make([]byte, 16)
	if n, err := f.ReadAt(buf, 0); string(buf[:n]) != "content" {
		t.Fatalf("read after open: %q, %v", buf[:n], err)
	}
	if got := openFDs(t, path); got != before+1 {
		t.Fatalf("%d descriptors open with the file open, want %d", got, before+1)
	}
	f.Close()
	if got := openFDs(t, path); got != before {
		t.Fatalf("%d descriptors open after close, %d before: leaked", got, before)
	}
}

// TestConcurrentOpenOneFid sends concurrent Tlopen on one fid through p9's
// client: exactly one succeeds, the rest fail with EINVAL, and after the
// clunk the server holds no more descriptors than before (run with -race).
func TestConcurrentOpenOneFid(t *testing.T) {
	l := newLayout(t)
	writeFile(t, filepath.Join(l.root, "f"), "content")
	root := serve(t, l.root, Options{}, 64<<10)
	path := filepath.Join(l.root, "f")
	before := openFDs(t, path)
	for round := range 20 {
		_, f, err := root.Walk([]string{"f"})
		if err != nil {
			t.Fatal(err)
		}
		const n = 8
		errs := make(chan error, n)
		start := make(chan struct{})
		for range n {
			go func() {
				<-start
				_, _, err := f.Open(p9.ReadOnly)
				errs <- err
			}()
		}
		close(start)
		ok := 0
		for range n {
			if err := <-errs; err == nil {
				ok++
			} else {
				wantErrno(t, "concurrent open", err, linux.EINVAL)
			}
		}
		if ok != 1 {
			t.Fatalf("round %d: %d of %d concurrent opens succeeded, want 1", round, ok, n)
		}
		buf := make([]byte, 16)
		if n, err := f.ReadAt(buf, 0); string(buf[:n]) != "content" {
			t.Fatalf("read after open: %q, %v", buf[:n], err)
		}
		if got := openFDs(t, path); got != before+1 {
			t.Fatalf("round %d: %d descriptors open on the file, want %d", round, got, before+1)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if got := openFDs(t, path); got != before {
		t.Fatalf("%d descriptors open after the clunks, %d before: leaked", got, before)
	}
	t.Logf("descriptors on the file: %d before, %d after 20 rounds of 8 concurrent opens", before, openFDs(t, path))
}

// TestXattrRefused: Txattrcreate and Txattrwalk are refused with EOPNOTSUPP
// and leave no fid behind, so no Twrite can fill an xattr buffer on the host.
func TestXattrRefused(t *testing.T) {
	l := newLayout(t)
	writeFile(t, filepath.Join(l.root, "f"), "x")
	r := serveRaw(t, l.root, 64<<10)
	r.ok(r.rpc(msgTwalk, twalkBody(0, 1, "f")))

	// Txattrcreate fid[4] name[s] attr_size[8] flags[4], then Twrite
	// fid[4] offset[8] count[4] data: the write finds no pending xattr.
	typ, body := r.rpc(msgTxattrcreate, le32(1), pstr("user.big"), le64(1<<40), le32(0))
	if e := replyErrno(typ, body); e != linux.EOPNOTSUPP {
		t.Fatalf("Txattrcreate: reply type %d errno %v, want EOPNOTSUPP", typ, e)
	}
	data := bytes.Repeat([]byte{'a'}, 32<<10)
	typ, body = r.rpc(118, le32(1), le64(0), le32(uint32(len(data))), data)
	if e := replyErrno(typ, body); e != linux.EINVAL {
		t.Fatalf("Twrite after a refused Txattrcreate: reply type %d errno %v, want EINVAL (fid not open)", typ, e)
	}
	if got := takeSnapshot(t, filepath.Join(l.root, "f")); string(got.data) != "x" {
		t.Fatalf("file changed: %q", got.data)
	}

	// Txattrwalk fid[4] newfid[4] name[s], for one name and for the list.
	for _, name := range []string{"user.x", ""} {
		typ, body := r.rpc(msgTxattrwalk, le32(1), le32(2), pstr(name))
		if e := replyErrno(typ, body); e != linux.EOPNOTSUPP {
			t.Fatalf("Txattrwalk %q: reply type %d errno %v, want EOPNOTSUPP", name, typ, e)
		}
		typ, body = r.rpc(120, le32(2)) // Tclunk
		if e := replyErrno(typ, body); e != linux.EBADF {
			t.Fatalf("Tclunk of the xattr fid: reply type %d errno %v, want EBADF (never created)", typ, e)
		}
	}
}

// TestGetlockUnlocked: Tgetlock says "unlocked", echoing the range, even
// after a Tlock on the same range was granted (locks are not taken on the
// host, so none can conflict), which is what fcntl(F_GETLK) needs.
func TestGetlockUnlocked(t *testing.T) {
	l := newLayout(t)
	writeFile(t, filepath.Join(l.root, "f"), "x")
	r := serveRaw(t, l.root, 64<<10)
	r.walkOpen(1, "f")

	// Tlock fid[4] type[1] flags[4] start[8] length[8] proc_id[4] client_id[s]
	lock := r.ok(r.rpc(52, le32(1), []byte{1}, le32(0), le64(10), le64(20), le32(42), pstr("guest")))
	if len(lock) != 1 || lock[0] != 0 {
		t.Fatalf("Rlock %v, want status 0 (success)", lock)
	}
	// Tgetlock fid[4] type[1] start[8] length[8] proc_id[4] client_id[s]
	req := [][]byte{le32(1), []byte{1}, le64(10), le64(20), le32(42), pstr("guest")}
	typ, body := r.rpc(msgTgetlock, req...)
	if typ != msgRgetlock {
		t.Fatalf("Tgetlock: reply type %d (errno %v), want Rgetlock", typ, replyErrno(typ, body))
	}
	want := append([]byte{lockTypeUnlck}, bytes.Join(req[2:], nil)...)
	if !bytes.Equal(body, want) {
		t.Fatalf("Rgetlock body %v, want %v", body, want)
	}
	// A client_id longer than the message is refused.
	typ, body = r.rpc(msgTgetlock, le32(1), []byte{1}, le64(0), le64(0), le32(1), le16(100), []byte("short"))
	if e := replyErrno(typ, body); e != linux.EINVAL {
		t.Fatalf("truncated Tgetlock: reply type %d errno %v, want EINVAL", typ, e)
	}
}

// TestRepliesFitMsize: at msize 8 KiB, a Tread or Treaddir asking for far
// more than msize gets a reply no larger than msize (rawConn.recv checks),
// as full as msize allows; an msize above 1 MiB is lowered to 1 MiB.
func TestRepliesFitMsize(t *testing.T) {
	l := newLayout(t)
	const msize = 8 << 10
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	must(t, os.WriteFile(filepath.Join(l.root, "big"), big, 0o644))
	must(t, os.Mkdir(filepath.Join(l.root, "dir"), 0o755))
	for i := range 2000 {
		writeFile(t, filepath.Join(l.root, "dir", fmt.Sprintf("entry-%04d", i)), "")
	}
	r := serveRaw(t, l.root, msize)
	if r.msize != msize {
		t.Fatalf("negotiated msize %d, want %d", r.msize, msize)
	}
	r.walkOpen(1, "big")
	for _, count := range []uint32{msize - ioHdrLen, msize, 1 << 20, 4 << 20} {
		body := r.ok(r.rpc(msgTread, le32(1), le64(0), le32(count)))
		if n := binary.LittleEndian.Uint32(body); n != msize-ioHdrLen || !bytes.Equal(body[4:], big[:n]) {
			t.Fatalf("Tread count %d: %d bytes, want the first %d of the file", count, n, msize-ioHdrLen)
		}
	}
	r.walkOpen(2, "dir")
	for _, count := range []uint32{msize, 1 << 20} {
		body := r.ok(r.rpc(msgTreaddir, le32(2), le64(0), le32(count)))
		if n := binary.LittleEndian.Uint32(body); n < msize-ioHdrLen-300 {
			t.Fatalf("Treaddir count %d: %d bytes of entries, want close to %d", count, n, msize-ioHdrLen)
		}
	}

	if r := serveRaw(t, l.root, 8<<20); r.msize != guardMaxMsize {
		t.Fatalf("msize 8 MiB negotiated as %d, want %d", r.msize, guardMaxMsize)
	}

	// Through p9's client: large reads and a readdir count of 1 MiB.
	root := serve(t, l.root, Options{}, msize)
	f := walk(t, root, "big")
	if _, _, err := f.Open(p9.ReadOnly); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(big))
	if n, err := f.ReadAt(got, 0); n != len(big) || !bytes.Equal(got, big) {
		t.Fatalf("read %d of %d bytes (%v)", n, len(big), err)
	}
	d := walk(t, root, "dir")
	if _, _, err := d.Open(p9.ReadOnly); err != nil {
		t.Fatal(err)
	}
	if ents := readAllDir(t, d, 1<<20); len(ents) != 2000 {
		t.Fatalf("listed %d entries with count 1 MiB, want 2000", len(ents))
	}
}

// TestNegativeOffsets: 9P offsets of 2^63 and more are negative file offsets:
// EINVAL for reads, writes and readdir, as pread, pwrite and getdents give.
func TestNegativeOffsets(t *testing.T) {
	l := newLayout(t)
	writeFile(t, filepath.Join(l.root, "f"), "content")
	must(t, os.Mkdir(filepath.Join(l.root, "d"), 0o755))
	root := serve(t, l.root, Options{}, 64<<10)
	f := walk(t, root, "f")
	if _, _, err := f.Open(p9.ReadWrite); err != nil {
		t.Fatal(err)
	}
	_, err := f.ReadAt(make([]byte, 4), -1)
	wantErrno(t, "read at -1", err, linux.EINVAL)
	_, err = f.WriteAt([]byte("x"), -1<<63)
	wantErrno(t, "write at -2^63", err, linux.EINVAL)
	d := walk(t, root, "d")
	if _, _, err := d.Open(p9.ReadOnly); err != nil {
		t.Fatal(err)
	}
	_, err = d.Readdir(1<<63, 4096)
	wantErrno(t, "readdir at 2^63", err, linux.EINVAL)
	if got := takeSnapshot(t, filepath.Join(l.root, "f")); string(got.data) != "content" {
		t.Fatalf("file changed: %q", got.data)
	}
}

// TestWalkNameLimit: a Twalk of more than 16 names (MAXWELEM) is EINVAL even
// where the path exists; 16 names walk.
func TestWalkNameLimit(t *testing.T) {
	l := newLayout(t)
	names := make([]string, maxWalkNames+1)
	p := l.root
	for i := range names {
		names[i] = fmt.Sprint("d", i)
		p = filepath.Join(p, names[i])
		must(t, os.Mkdir(p, 0o755))
	}
	r := serveRaw(t, l.root, 64<<10)
	body := r.ok(r.rpc(msgTwalk, twalkBody(0, 1, names[:maxWalkNames]...)))
	if n := binary.LittleEndian.Uint16(body); n != maxWalkNames {
		t.Fatalf("walk of %d names returned %d QIDs", maxWalkNames, n)
	}
	typ, body := r.rpc(msgTwalk, twalkBody(0, 2, names...))
	if e := replyErrno(typ, body); e != linux.EINVAL {
		t.Fatalf("walk of %d names: reply type %d errno %v, want EINVAL", len(names), typ, e)
	}
}

// TestReaddirMemoryBounded: a Readdir far into a big directory allocates
// about its count, not the whole listing (before, every call collected every
// entry: a guest could make each Treaddir hold a whole huge directory).
func TestReaddirMemoryBounded(t *testing.T) {
	l := newLayout(t)
	const n = 20000
	for i := range n {
		writeFile(t, filepath.Join(l.root, fmt.Sprintf("a-rather-long-file-name-to-list-%05d", i)), "")
	}
	att, closer, err := Attacher(l.root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	rf, err := att.Attach()
	if err != nil {
		t.Fatal(err)
	}
	_, d, err := rf.Walk(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, _, err := d.Open(p9.ReadOnly); err != nil {
		t.Fatal(err)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.TotalAlloc
	ents, err := d.Readdir(n-10, 4096)
	runtime.ReadMemStats(&ms)
	if err != nil || len(ents) != 10 {
		t.Fatalf("readdir near the end: %d entries, %v", len(ents), err)
	}
	// 32 KiB getdents buffer and ten entries; the whole listing is ~2 MB.
	if alloc := ms.TotalAlloc - before; alloc > 256<<10 {
		t.Fatalf("one Readdir of 4096 bytes allocated %d bytes", alloc)
	}
}

// TestInFlightBounded pipelines three times maxInFlight Treads of 64 KiB
// without reading the replies: the server stops taking requests once
// maxInFlight are being handled (the rest stay unread in its socket), and
// carries on as the replies are read.
func TestInFlightBounded(t *testing.T) {
	l := newLayout(t)
	const msize = 64 << 10
	must(t, os.WriteFile(filepath.Join(l.root, "big"), bytes.Repeat([]byte{'x'}, msize), 0o644))
	r, g, sc := serveRawGuard(t, l.root, msize)
	r.walkOpen(1, "big")
	const n, reqSize = 3 * maxInFlight, hdrLen + 16
	for i := range n {
		r.send(uint16(1000+i), msgTread, le32(1), le64(0), le32(msize))
	}
	inflight := func() int {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.inflight
	}
	for {
		unread, busy := unreadBytes(t, sc), inflight()
		if busy > maxInFlight {
			t.Fatalf("%d requests in flight, more than %d", busy, maxInFlight)
		}
		if unread == 0 {
			t.Fatalf("the server took all %d requests while none of the replies was read", n)
		}
		if busy == maxInFlight {
			t.Logf("%d requests in flight, %d of %d still unread in the socket", busy, unread/reqSize, n)
			break
		}
		time.Sleep(time.Millisecond) // waiting for a state, not timing it
	}
	seen := map[uint16]bool{}
	for range n {
		var hdr [hdrLen]byte
		if _, err := io.ReadFull(r.c, hdr[:]); err != nil {
			t.Fatal(err)
		}
		tag := binary.LittleEndian.Uint16(hdr[5:7])
		body := make([]byte, binary.LittleEndian.Uint32(hdr[0:4])-hdrLen)
		if _, err := io.ReadFull(r.c, body); err != nil {
			t.Fatal(err)
		}
		if hdr[4] != msgTread+1 || seen[tag] || tag < 1000 || tag >= 1000+n {
			t.Fatalf("reply type %d tag %d (seen before: %v)", hdr[4], tag, seen[tag])
		}
		seen[tag] = true
	}
	if got := unreadBytes(t, sc); got != 0 {
		t.Fatalf("%d request bytes left unread after every reply", got)
	}
}
