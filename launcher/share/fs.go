// Package share serves a host directory (the developer's checkout) to a VM
// over 9P2000.L, confined to that directory with Go's os.Root.
//
// Every host access goes through the *os.Root opened on the shared
// directory (or through a file descriptor obtained from it): fids only keep a
// path relative to the root, and no path string is ever joined onto the host
// path of the root. Symbolic links are never followed out of the root:
//
//   - walking onto a symlink yields a fid for the link itself (lstat), and the
//     p9 server refuses to open such a fid or walk through it;
//   - a path whose components were replaced on the host by a symlink that
//     points outside the root (or an absolute symlink) is refused by os.Root;
//     such an attempted escape is reported to the client as EACCES;
//   - SetAttr on a symlink fid never touches the link target (size and mode are
//     refused, ownership uses lchown, times use utimensat(AT_SYMLINK_NOFOLLOW)
//     relative to a directory opened through the root);
//   - hard links are made with Root.Link, which links a symlink itself, never
//     its target.
//
// Other policies: the process umask is never changed (created files and
// directories get exactly the requested permission bits with an explicit
// chmod); setuid and setgid bits requested by the client are dropped;
// ownership changes are only performed when devvm runs as root (otherwise a
// chown to a different owner fails with EPERM, and a chown to the current owner
// succeeds); mknod is refused with EPERM; extended attributes are not supported
// (EOPNOTSUPP); POSIX locks are granted without being taken on the host (the
// same as QEMU's 9p server), so they only matter inside the guest, and
// Tgetlock reports no conflicting lock.
//
// Requests that p9.Server handles without calling into this file
// (Txattrcreate, Txattrwalk, Tgetlock, msize and read counts, walk lengths,
// concurrent opens of one fid, requests in flight) are policed by the guard
// in guard.go: serve a connection with Serve, never with p9.Server directly.
package share

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hugelgupf/p9/linux"
	"github.com/hugelgupf/p9/p9"
	"golang.org/x/sys/unix"
)

// Options configure the file server.
type Options struct {
	// ReadOnly makes every mutation fail with EROFS.
	ReadOnly bool
}

// v9fsMagic is the f_type Linux reports for 9p mounts (V9FS_MAGIC).
const v9fsMagic = 0x01021997

// Attacher opens root with os.OpenRoot and returns a p9.Attacher serving it
// and an io.Closer that closes the root. Serve it with Serve(att, conn).
func Attacher(root string, opts Options) (p9.Attacher, io.Closer, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, nil, fmt.Errorf("share: cannot open %s as the root of the shared directory: %w", root, err)
	}
	fi, err := r.Lstat(".")
	if err != nil {
		r.Close()
		return nil, nil, fmt.Errorf("share: cannot stat the shared directory %s: %w", root, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		r.Close()
		return nil, nil, fmt.Errorf("share: no stat information for %s on this platform", root)
	}
	fs := &fsys{
		root:     r,
		readOnly: opts.ReadOnly,
		isRoot:   os.Geteuid() == 0,
		rootDev:  uint64(st.Dev),
		devs:     map[uint64]uint64{},
	}
	fs.escape = escapeSentinel(r)
	return fs, r, nil
}

// escapeSentinel returns the error os.Root uses for "path escapes from
// parent" (unexported in package os), captured by provoking it with an
// absolute path, which os.Root rejects before making any system call.
func escapeSentinel(r *os.Root) error {
	_, err := r.Lstat("/")
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// fsys is the shared state of one Attacher.
type fsys struct {
	root     *os.Root
	readOnly bool
	isRoot   bool
	escape   error
	rootDev  uint64

	devMu sync.Mutex
	devs  map[uint64]uint64 // device number -> small index, for QID paths
}

// Attach implements p9.Attacher.
func (fs *fsys) Attach() (p9.File, error) {
	fi, err := fs.root.Lstat(".")
	if err != nil {
		return nil, fs.errno(err)
	}
	return &file{fs: fs, path: ".", typ: p9.ModeFromOS(fi.Mode()).FileType()}, nil
}

// errno converts a host error into a linux.Errno for the client.
func (fs *fsys) errno(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, fs.escape) || strings.Contains(err.Error(), "path escapes from parent") {
		return linux.EACCES
	}
	var le linux.Errno
	if errors.As(err, &le) {
		return le
	}
	var se syscall.Errno
	if errors.As(err, &se) {
		return linux.Errno(se)
	}
	if errors.Is(err, io.EOF) {
		return io.EOF
	}
	return linux.ExtractErrno(err)
}

// qidPath maps (dev, ino) to a stable 64-bit QID path: the inode number for
// files on the root's device, the inode number mixed with a small per-device
// index otherwise.
func (fs *fsys) qidPath(dev, ino uint64) uint64 {
	if dev == fs.rootDev {
		return ino
	}
	fs.devMu.Lock()
	defer fs.devMu.Unlock()
	idx, ok := fs.devs[dev]
	if !ok {
		idx = uint64(len(fs.devs) + 1)
		fs.devs[dev] = idx
	}
	return ino ^ idx<<48
}

func (fs *fsys) qid(st *syscall.Stat_t) p9.QID {
	return p9.QID{
		Type: p9.FileMode(st.Mode).QIDType(),
		Path: fs.qidPath(uint64(st.Dev), st.Ino),
	}
}

// allAttrs is the attribute mask this server always fills in.
var allAttrs = p9.AttrMask{
	Mode: true, NLink: true, UID: true, GID: true, RDev: true,
	ATime: true, MTime: true, CTime: true, INo: true, Size: true, Blocks: true,
}

func statAttr(st *syscall.Stat_t) p9.Attr {
	return p9.Attr{
		Mode:             p9.FileMode(st.Mode),
		UID:              p9.UID(st.Uid),
		GID:              p9.GID(st.Gid),
		NLink:            p9.NLink(st.Nlink),
		RDev:             p9.Dev(st.Rdev),
		Size:             uint64(st.Size),
		BlockSize:        uint64(st.Blksize),
		Blocks:           uint64(st.Blocks),
		ATimeSeconds:     uint64(st.Atim.Sec),
		ATimeNanoSeconds: uint64(st.Atim.Nsec),
		MTimeSeconds:     uint64(st.Mtim.Sec),
		MTimeNanoSeconds: uint64(st.Mtim.Nsec),
		CTimeSeconds:     uint64(st.Ctim.Sec),
		CTimeNanoSeconds: uint64(st.Ctim.Nsec),
	}
}

func sysStat(fi os.FileInfo) (*syscall.Stat_t, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, linux.EIO
	}
	return st, nil
}

// lstat stats rel without following a final symlink.
func (fs *fsys) lstat(rel string) (*syscall.Stat_t, error) {
	fi, err := fs.root.Lstat(rel)
	if err != nil {
		return nil, fs.errno(err)
	}
	return sysStat(fi)
}

// validName rejects names that are not a single path component. The p9
// server already checks this; the check is repeated so that this package
// never relies on it.
func validName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return linux.EINVAL
	}
	return nil
}

// join appends one validated component to a root-relative path.
func join(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name
}

// file is one fid: a root-relative path plus, once opened, the *os.File
// obtained from the root.
type file struct {
	fs *fsys

	mu   sync.Mutex // guards path (changed by Renamed)
	path string

	typ p9.FileMode // file type at walk time (lstat)

	// openMu guards f, set once by Open (or at Create). p9.Server checks
	// that a fid is not opened twice, but it reads its "opened" flag under a
	// shared lock and sets it only after Open returns (hugelgupf/p9 v0.4.1
	// p9/handlers.go:315-340), so two concurrent Tlopen on one fid both reach
	// Open; the second must be refused here, or its descriptor would replace
	// (and leak) the first.
	openMu sync.Mutex
	f      *os.File
	dirMu  sync.Mutex // serializes Readdir on f
}

var _ p9.File = (*file)(nil)

// handle returns the open descriptor, or nil before Open.
func (fl *file) handle() *os.File {
	fl.openMu.Lock()
	defer fl.openMu.Unlock()
	return fl.f
}

func (fl *file) relPath() string {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return fl.path
}

func (fl *file) child(name string) (string, error) {
	if err := validName(name); err != nil {
		return "", err
	}
	return join(fl.relPath(), name), nil
}

// walk resolves names one component at a time with lstat.
func (fl *file) walk(names []string) ([]p9.QID, *file, *syscall.Stat_t, error) {
	p := fl.relPath()
	if len(names) == 0 {
		st, err := fl.fs.lstat(p)
		if err != nil {
			return nil, nil, nil, err
		}
		return nil, &file{fs: fl.fs, path: p, typ: fl.typ}, st, nil
	}
	qids := make([]p9.QID, 0, len(names))
	var st *syscall.Stat_t
	for i, name := range names {
		if err := validName(name); err != nil {
			return nil, nil, nil, err
		}
		if i > 0 && !p9.FileMode(st.Mode).IsDir() {
			return nil, nil, nil, linux.ENOTDIR
		}
		p = join(p, name)
		var err error
		if st, err = fl.fs.lstat(p); err != nil {
			return nil, nil, nil, err
		}
		qids = append(qids, fl.fs.qid(st))
	}
	return qids, &file{fs: fl.fs, path: p, typ: p9.FileMode(st.Mode).FileType()}, st, nil
}

// Walk implements p9.File.Walk.
func (fl *file) Walk(names []string) ([]p9.QID, p9.File, error) {
	qids, nf, _, err := fl.walk(names)
	if err != nil {
		return nil, nil, err
	}
	return qids, nf, nil
}

// WalkGetAttr implements p9.File.WalkGetAttr with a single lstat per name.
func (fl *file) WalkGetAttr(names []string) ([]p9.QID, p9.File, p9.AttrMask, p9.Attr, error) {
	qids, nf, st, err := fl.walk(names)
	if err != nil {
		return nil, nil, p9.AttrMask{}, p9.Attr{}, err
	}
	return qids, nf, allAttrs, statAttr(st), nil
}

// stat returns fstat of the open file, or lstat of the path.
func (fl *file) stat() (*syscall.Stat_t, error) {
	if f := fl.handle(); f != nil {
		fi, err := f.Stat()
		if err != nil {
			return nil, fl.fs.errno(err)
		}
		return sysStat(fi)
	}
	return fl.fs.lstat(fl.relPath())
}

// GetAttr implements p9.File.GetAttr.
func (fl *file) GetAttr(p9.AttrMask) (p9.QID, p9.AttrMask, p9.Attr, error) {
	st, err := fl.stat()
	if err != nil {
		return p9.QID{}, p9.AttrMask{}, p9.Attr{}, err
	}
	return fl.fs.qid(st), allAttrs, statAttr(st), nil
}

// StatFS implements p9.File.StatFS.
func (fl *file) StatFS() (p9.FSStat, error) {
	d, err := fl.fs.root.Open(".")
	if err != nil {
		return p9.FSStat{}, fl.fs.errno(err)
	}
	defer d.Close()
	var s unix.Statfs_t
	if err := withFd(d, func(fd int) error { return unix.Fstatfs(fd, &s) }); err != nil {
		return p9.FSStat{}, fl.fs.errno(err)
	}
	return p9.FSStat{
		Type:            v9fsMagic,
		BlockSize:       uint32(s.Bsize),
		Blocks:          s.Blocks,
		BlocksFree:      s.Bfree,
		BlocksAvailable: s.Bavail,
		Files:           s.Files,
		FilesFree:       s.Ffree,
		FSID:            uint64(uint32(s.Fsid.Val[0])) | uint64(uint32(s.Fsid.Val[1]))<<32,
		NameLength:      uint32(s.Namelen),
	}, nil
}

// withFd runs fn with the descriptor of f without switching it to blocking
// mode (as f.Fd would).
func withFd(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// openFlags converts 9P2000.L open flags (Linux values) into os flags. Only
// the access mode and O_TRUNC are honoured; O_APPEND is handled by the
// client (it writes at the offset it wants) and O_CREAT/O_EXCL come with
// Tlcreate.
func openFlags(fl p9.OpenFlags) int {
	flags := int(fl & p9.OpenFlagsModeMask)
	if fl&p9.OpenFlags(unix.O_TRUNC) != 0 {
		flags |= os.O_TRUNC
	}
	return flags
}

// writes reports whether os flags would modify the file.
func writes(flags int) bool {
	return flags&(os.O_WRONLY|os.O_RDWR|os.O_TRUNC) != 0
}

// Open implements p9.File.Open. Only regular files and directories can be
// opened; symlink fids are refused (the server refuses them too). A fid is
// opened at most once: a second Open fails with EINVAL, the error p9.Server
// itself gives for a fid already open (hugelgupf/p9 v0.4.1
// p9/handlers.go:321-323), and keeps the first descriptor.
func (fl *file) Open(mode p9.OpenFlags) (p9.QID, uint32, error) {
	fl.openMu.Lock()
	defer fl.openMu.Unlock()
	if fl.f != nil {
		return p9.QID{}, 0, linux.EINVAL
	}
	flags := openFlags(mode)
	if fl.fs.readOnly && writes(flags) {
		return p9.QID{}, 0, linux.EROFS
	}
	switch {
	case fl.typ.IsSymlink():
		return p9.QID{}, 0, linux.ELOOP
	case fl.typ.IsDir():
		if flags != os.O_RDONLY {
			return p9.QID{}, 0, linux.EISDIR
		}
		flags |= unix.O_DIRECTORY
	case !fl.typ.IsRegular():
		return p9.QID{}, 0, linux.ENXIO
	}
	// O_NONBLOCK: should the path have been replaced by a FIFO since the
	// walk, the open must not block a server goroutine.
	f, err := fl.fs.root.OpenFile(fl.relPath(), flags|unix.O_NONBLOCK, 0)
	if err != nil {
		return p9.QID{}, 0, fl.fs.errno(err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return p9.QID{}, 0, fl.fs.errno(err)
	}
	st, err := sysStat(fi)
	if err != nil {
		f.Close()
		return p9.QID{}, 0, err
	}
	if p9.FileMode(st.Mode).FileType() != fl.typ {
		// Replaced by something else since the walk.
		f.Close()
		return p9.QID{}, 0, linux.ESTALE
	}
	fl.f = f
	return fl.fs.qid(st), 0, nil
}

// ReadAt implements p9.File.ReadAt. A negative offset (a 9P offset of 2^63
// or more) is EINVAL, as pread(2) gives.
func (fl *file) ReadAt(p []byte, offset int64) (int, error) {
	f := fl.handle()
	switch {
	case f == nil:
		return 0, linux.EBADF
	case fl.typ.IsDir():
		return 0, linux.EISDIR
	case offset < 0:
		return 0, linux.EINVAL
	}
	n, err := f.ReadAt(p, offset)
	if err != nil && !errors.Is(err, io.EOF) {
		return n, fl.fs.errno(err)
	}
	return n, err
}

// WriteAt implements p9.File.WriteAt. A negative offset is EINVAL, as
// pwrite(2) gives.
func (fl *file) WriteAt(p []byte, offset int64) (int, error) {
	f := fl.handle()
	switch {
	case fl.fs.readOnly:
		return 0, linux.EROFS
	case f == nil:
		return 0, linux.EBADF
	case fl.typ.IsDir():
		return 0, linux.EISDIR
	case offset < 0:
		return 0, linux.EINVAL
	}
	n, err := f.WriteAt(p, offset)
	return n, fl.fs.errno(err)
}

// FSync implements p9.File.FSync.
func (fl *file) FSync() error {
	f := fl.handle()
	if f == nil {
		return nil
	}
	return fl.fs.errno(f.Sync())
}

// Close implements p9.File.Close.
func (fl *file) Close() error {
	if f := fl.handle(); f != nil {
		return f.Close()
	}
	return nil
}

// filePerm converts client permission bits into what this server applies:
// rwx and sticky; setuid/setgid are dropped (see the package comment).
func filePerm(m p9.FileMode) (os.FileMode, uint32) {
	bits := uint32(m.Permissions()) & 0o1777
	mode := os.FileMode(bits & 0o777)
	if bits&unix.S_ISVTX != 0 {
		mode |= os.ModeSticky
	}
	return mode, bits
}

// fixPerm makes the permission bits exactly 'want' (undoing the process
// umask) while keeping setuid/setgid bits the kernel may have set.
func fixPerm(st *syscall.Stat_t, want uint32, chmod func(os.FileMode) error) error {
	have := st.Mode & 0o7777
	target := have&^0o1777 | want
	if have == target {
		return nil
	}
	mode := os.FileMode(target & 0o777)
	if target&unix.S_ISVTX != 0 {
		mode |= os.ModeSticky
	}
	if target&unix.S_ISGID != 0 {
		mode |= os.ModeSetgid
	}
	if target&unix.S_ISUID != 0 {
		mode |= os.ModeSetuid
	}
	return chmod(mode)
}

// chownNew gives a newly created node the requesting guest user's ids when
// devvm runs as root; otherwise files belong to the developer.
func (fs *fsys) chownNew(rel string, uid p9.UID, gid p9.GID) error {
	if !fs.isRoot || (!uid.Ok() && !gid.Ok()) {
		return nil
	}
	u, g := -1, -1
	if uid.Ok() {
		u = int(uid)
	}
	if gid.Ok() {
		g = int(gid)
	}
	return fs.errno(fs.root.Lchown(rel, u, g))
}

// Create implements p9.File.Create: O_CREAT|O_EXCL through the root.
func (fl *file) Create(name string, flags p9.OpenFlags, perm p9.FileMode, uid p9.UID, gid p9.GID) (p9.File, p9.QID, uint32, error) {
	if fl.fs.readOnly {
		return nil, p9.QID{}, 0, linux.EROFS
	}
	rel, err := fl.child(name)
	if err != nil {
		return nil, p9.QID{}, 0, err
	}
	mode, bits := filePerm(perm)
	osFlags := openFlags(flags)&^os.O_TRUNC | os.O_CREATE | os.O_EXCL
	f, err := fl.fs.root.OpenFile(rel, osFlags, mode&^os.ModeSticky)
	if err != nil {
		return nil, p9.QID{}, 0, fl.fs.errno(err)
	}
	st, err := fstat(f)
	if err == nil {
		err = fixPerm(st, bits, f.Chmod)
	}
	if err == nil {
		err = fl.fs.chownNew(rel, uid, gid)
	}
	if err == nil {
		st, err = fstat(f)
	}
	if err != nil {
		f.Close()
		fl.fs.root.Remove(rel)
		return nil, p9.QID{}, 0, fl.fs.errno(err)
	}
	nf := &file{fs: fl.fs, path: rel, typ: p9.ModeRegular, f: f}
	return nf, fl.fs.qid(st), 0, nil
}

func fstat(f *os.File) (*syscall.Stat_t, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return sysStat(fi)
}

// Mkdir implements p9.File.Mkdir.
func (fl *file) Mkdir(name string, perm p9.FileMode, uid p9.UID, gid p9.GID) (p9.QID, error) {
	if fl.fs.readOnly {
		return p9.QID{}, linux.EROFS
	}
	rel, err := fl.child(name)
	if err != nil {
		return p9.QID{}, err
	}
	mode, bits := filePerm(perm)
	if err := fl.fs.root.Mkdir(rel, mode&^os.ModeSticky); err != nil {
		return p9.QID{}, fl.fs.errno(err)
	}
	st, err := fl.fs.lstat(rel)
	if err == nil {
		err = fixPerm(st, bits, func(m os.FileMode) error { return fl.fs.root.Chmod(rel, m) })
	}
	if err == nil {
		err = fl.fs.chownNew(rel, uid, gid)
	}
	if err == nil {
		st, err = fl.fs.lstat(rel)
	}
	if err != nil {
		return p9.QID{}, fl.fs.errno(err)
	}
	return fl.fs.qid(st), nil
}

// Symlink implements p9.File.Symlink. The target is stored verbatim: it is
// only data for the guest, which resolves links itself; this server never
// follows it out of the root.
func (fl *file) Symlink(target, name string, uid p9.UID, gid p9.GID) (p9.QID, error) {
	if fl.fs.readOnly {
		return p9.QID{}, linux.EROFS
	}
	rel, err := fl.child(name)
	if err != nil {
		return p9.QID{}, err
	}
	if target == "" || strings.ContainsRune(target, 0) {
		return p9.QID{}, linux.EINVAL
	}
	if err := fl.fs.root.Symlink(target, rel); err != nil {
		return p9.QID{}, fl.fs.errno(err)
	}
	if err := fl.fs.chownNew(rel, uid, gid); err != nil {
		return p9.QID{}, err
	}
	st, err := fl.fs.lstat(rel)
	if err != nil {
		return p9.QID{}, err
	}
	return fl.fs.qid(st), nil
}

// Link implements p9.File.Link. Both ends are paths inside the root;
// Root.Link links a symlink itself, never what it points to.
func (fl *file) Link(target p9.File, name string) error {
	if fl.fs.readOnly {
		return linux.EROFS
	}
	t, ok := target.(*file)
	if !ok || t.fs != fl.fs {
		return linux.EXDEV
	}
	rel, err := fl.child(name)
	if err != nil {
		return err
	}
	if t.typ.IsDir() {
		return linux.EPERM
	}
	return fl.fs.errno(fl.fs.root.Link(t.relPath(), rel))
}

// Mknod implements p9.File.Mknod: device nodes, FIFOs and sockets are not
// created on the host.
func (fl *file) Mknod(name string, _ p9.FileMode, _, _ uint32, _ p9.UID, _ p9.GID) (p9.QID, error) {
	if fl.fs.readOnly {
		return p9.QID{}, linux.EROFS
	}
	if err := validName(name); err != nil {
		return p9.QID{}, err
	}
	return p9.QID{}, linux.EPERM
}

// Rename implements p9.File.Rename. p9.Server never calls it (it uses
// RenameAt on the parent), so it only reports that.
func (fl *file) Rename(p9.File, string) error {
	return linux.ENOSYS
}

// RenameAt implements p9.File.RenameAt with Root.Rename: both ends inside.
func (fl *file) RenameAt(oldName string, newDir p9.File, newName string) error {
	if fl.fs.readOnly {
		return linux.EROFS
	}
	nd, ok := newDir.(*file)
	if !ok || nd.fs != fl.fs {
		return linux.EXDEV
	}
	from, err := fl.child(oldName)
	if err != nil {
		return err
	}
	to, err := nd.child(newName)
	if err != nil {
		return err
	}
	return fl.fs.errno(fl.fs.root.Rename(from, to))
}

// Renamed implements p9.File.Renamed: the server tells us our new location.
func (fl *file) Renamed(newDir p9.File, newName string) {
	nd, ok := newDir.(*file)
	if !ok || validName(newName) != nil {
		return
	}
	p := join(nd.relPath(), newName)
	fl.mu.Lock()
	fl.path = p
	fl.mu.Unlock()
}

// UnlinkAt implements p9.File.UnlinkAt (flags: AT_REMOVEDIR for rmdir).
func (fl *file) UnlinkAt(name string, flags uint32) error {
	if fl.fs.readOnly {
		return linux.EROFS
	}
	rel, err := fl.child(name)
	if err != nil {
		return err
	}
	st, err := fl.fs.lstat(rel)
	if err != nil {
		return err
	}
	isDir := p9.FileMode(st.Mode).IsDir()
	switch {
	case flags&unix.AT_REMOVEDIR != 0 && !isDir:
		return linux.ENOTDIR
	case flags&unix.AT_REMOVEDIR == 0 && isDir:
		return linux.EISDIR
	}
	return fl.fs.errno(fl.fs.root.Remove(rel))
}

// Readlink implements p9.File.Readlink.
func (fl *file) Readlink() (string, error) {
	t, err := fl.fs.root.Readlink(fl.relPath())
	return t, fl.fs.errno(err)
}

// SetAttr implements p9.File.SetAttr: size, mode, ownership and times.
func (fl *file) SetAttr(valid p9.SetAttrMask, attr p9.SetAttr) error {
	if fl.fs.readOnly {
		return linux.EROFS
	}
	rel := fl.relPath()
	if valid.UID || valid.GID {
		if err := fl.chown(rel, valid, attr); err != nil {
			return err
		}
	}
	if valid.Permissions {
		if fl.typ.IsSymlink() {
			return linux.EOPNOTSUPP // Linux cannot chmod a symlink itself.
		}
		mode, _ := filePerm(attr.Permissions)
		if err := fl.fs.root.Chmod(rel, mode); err != nil {
			return fl.fs.errno(err)
		}
	}
	if valid.Size {
		if err := fl.truncate(rel, attr.Size); err != nil {
			return err
		}
	}
	if valid.ATime || valid.MTime {
		if err := fl.chtimes(rel, valid, attr); err != nil {
			return err
		}
	}
	return nil
}

func (fl *file) chown(rel string, valid p9.SetAttrMask, attr p9.SetAttr) error {
	st, err := fl.fs.lstat(rel)
	if err != nil {
		return err
	}
	u, g := -1, -1
	if valid.UID && attr.UID.Ok() && uint32(attr.UID) != st.Uid {
		u = int(attr.UID)
	}
	if valid.GID && attr.GID.Ok() && uint32(attr.GID) != st.Gid {
		g = int(attr.GID)
	}
	if u == -1 && g == -1 {
		return nil // already owned as requested
	}
	if !fl.fs.isRoot {
		return linux.EPERM
	}
	return fl.fs.errno(fl.fs.root.Lchown(rel, u, g))
}

// truncate changes the size through a descriptor opened from the root
// (ftruncate), never through a path, and never through a symlink fid.
func (fl *file) truncate(rel string, size uint64) error {
	switch {
	case fl.typ.IsDir():
		return linux.EISDIR
	case !fl.typ.IsRegular():
		return linux.EINVAL
	case size > 1<<63-1:
		return linux.EFBIG
	}
	if f := fl.handle(); f != nil {
		if err := f.Truncate(int64(size)); err == nil {
			return nil
		} else if !errors.Is(err, syscall.EBADF) && !errors.Is(err, syscall.EINVAL) {
			return fl.fs.errno(err)
		}
		// Opened read-only: open a writable descriptor below.
	}
	f, err := fl.fs.root.OpenFile(rel, os.O_WRONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return fl.fs.errno(err)
	}
	defer f.Close()
	st, err := fstat(f)
	if err != nil {
		return fl.fs.errno(err)
	}
	if !p9.FileMode(st.Mode).IsRegular() {
		return linux.EINVAL
	}
	return fl.fs.errno(f.Truncate(int64(size)))
}

// chtimes sets atime/mtime ("now" unless *NotSystemTime is set).
func (fl *file) chtimes(rel string, valid p9.SetAttrMask, attr p9.SetAttr) error {
	if fl.typ.IsSymlink() {
		return fl.lutimes(rel, valid, attr)
	}
	now := time.Now()
	var atime, mtime time.Time // zero = leave unchanged
	if valid.ATime {
		atime = now
		if valid.ATimeNotSystemTime {
			atime = time.Unix(int64(attr.ATimeSeconds), int64(attr.ATimeNanoSeconds))
		}
	}
	if valid.MTime {
		mtime = now
		if valid.MTimeNotSystemTime {
			mtime = time.Unix(int64(attr.MTimeSeconds), int64(attr.MTimeNanoSeconds))
		}
	}
	return fl.fs.errno(fl.fs.root.Chtimes(rel, atime, mtime))
}

// lutimes sets the times of a symlink itself: utimensat with
// AT_SYMLINK_NOFOLLOW on its name, relative to its parent directory opened
// through the root.
func (fl *file) lutimes(rel string, valid p9.SetAttrMask, attr p9.SetAttr) error {
	ts := func(set, explicit bool, sec, nsec uint64) unix.Timespec {
		switch {
		case !set:
			return unix.Timespec{Nsec: unix.UTIME_OMIT}
		case !explicit:
			return unix.Timespec{Nsec: unix.UTIME_NOW}
		}
		return unix.Timespec{Sec: int64(sec), Nsec: int64(nsec)}
	}
	times := []unix.Timespec{
		ts(valid.ATime, valid.ATimeNotSystemTime, attr.ATimeSeconds, attr.ATimeNanoSeconds),
		ts(valid.MTime, valid.MTimeNotSystemTime, attr.MTimeSeconds, attr.MTimeNanoSeconds),
	}
	dir, base := path.Split(rel)
	if dir == "" {
		dir = "."
	}
	d, err := fl.fs.root.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return fl.fs.errno(err)
	}
	defer d.Close()
	return fl.fs.errno(withFd(d, func(fd int) error {
		return unix.UtimesNanoAt(fd, base, times, unix.AT_SYMLINK_NOFOLLOW)
	}))
}

// SetXattr implements p9.File.SetXattr (not supported).
func (fl *file) SetXattr(string, []byte, p9.XattrFlags) error {
	if fl.fs.readOnly {
		return linux.EROFS
	}
	return linux.EOPNOTSUPP
}

// RemoveXattr implements p9.File.RemoveXattr (not supported).
func (fl *file) RemoveXattr(string) error {
	if fl.fs.readOnly {
		return linux.EROFS
	}
	return linux.EOPNOTSUPP
}

// GetXattr implements p9.File.GetXattr (not supported).
func (fl *file) GetXattr(string) ([]byte, error) { return nil, linux.EOPNOTSUPP }

// ListXattrs implements p9.File.ListXattrs (not supported).
func (fl *file) ListXattrs() ([]string, error) { return nil, linux.EOPNOTSUPP }

// Lock implements p9.File.Lock. Like QEMU's 9p server, locks are granted
// without taking a host lock (see the package comment); the guard answers
// Tgetlock to match (getlockReply).
func (fl *file) Lock(int, p9.LockType, p9.LockFlags, uint64, uint64, string) (p9.LockStatus, error) {
	return p9.LockStatusOK, nil
}

// direntSize is the encoded size of a p9.Dirent: QID (13) + offset (8) +
// type (1) + string length (2) + name.
func direntSize(name []byte) int { return 13 + 8 + 1 + 2 + len(name) }

// Readdir implements p9.File.Readdir statelessly: every call lists the open
// directory afresh (getdents from offset 0 on the descriptor obtained from the
// root), skips "." and "..", and returns the entries from index offset, each
// with Offset index+1, as many as fit in count bytes. Entries before offset
// are counted, not kept, and listing stops once count is full, so a call
// holds at most count bytes of entries however big the directory is.
//
// Dirent.Type carries the Linux DT_* value, which is what the Linux v9fs
// client passes to userspace (QEMU's server does the same).
func (fl *file) Readdir(offset uint64, count uint32) (p9.Dirents, error) {
	d := fl.handle()
	switch {
	case d == nil || !fl.typ.IsDir():
		return nil, linux.ENOTDIR
	case offset > math.MaxInt64:
		// Not an offset this server hands out: a negative loff_t in the
		// guest, which getdents(2) refuses with EINVAL too.
		return nil, linux.EINVAL
	}
	fl.dirMu.Lock()
	defer fl.dirMu.Unlock()
	st, err := fstat(d)
	if err != nil {
		return nil, fl.fs.errno(err)
	}
	var (
		out  p9.Dirents
		used int
		i    uint64
		full bool
	)
	err = readDirents(d, func(ino uint64, typ uint8, name []byte) bool {
		if i < offset {
			i++
			return true
		}
		sz := direntSize(name)
		if used+sz > int(count) {
			full = true
			return false
		}
		used += sz
		i++
		out = append(out, p9.Dirent{
			QID:    p9.QID{Type: dtQIDType(typ), Path: fl.fs.qidPath(uint64(st.Dev), ino)},
			Offset: i,
			Type:   p9.QIDType(typ),
			Name:   string(name),
		})
		return true
	})
	if err != nil {
		return nil, fl.fs.errno(err)
	}
	if full && len(out) == 0 {
		return nil, linux.EINVAL // count cannot hold even one entry
	}
	return out, nil
}

func dtQIDType(dt uint8) p9.QIDType {
	switch dt {
	case unix.DT_DIR:
		return p9.TypeDir
	case unix.DT_LNK:
		return p9.TypeSymlink
	}
	return p9.TypeRegular
}

// readDirents passes the entries of the open directory d, from its start, to
// fn until fn returns false or the entries run out. name is only valid during
// the call.
func readDirents(d *os.File, fn func(ino uint64, typ uint8, name []byte) bool) error {
	buf := make([]byte, 32<<10)
	return withFd(d, func(fd int) error {
		if _, err := unix.Seek(fd, 0, io.SeekStart); err != nil {
			return err
		}
		for {
			n, err := unix.Getdents(fd, buf)
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				return err
			}
			if n <= 0 || !parseDirents(buf[:n], fn) {
				return nil
			}
		}
	})
}

// parseDirents decodes struct linux_dirent64 records:
// d_ino u64, d_off s64, d_reclen u16, d_type u8, d_name (NUL-terminated),
// passing each entry but "." and ".." to fn. It reports false once fn has.
func parseDirents(b []byte, fn func(ino uint64, typ uint8, name []byte) bool) bool {
	const hdr = 19
	for len(b) >= hdr {
		reclen := int(binary.NativeEndian.Uint16(b[16:18]))
		if reclen < hdr || reclen > len(b) {
			break
		}
		rec := b[:reclen]
		b = b[reclen:]
		name := rec[hdr:]
		for i, c := range name {
			if c == 0 {
				name = name[:i]
				break
			}
		}
		if len(name) > 0 && string(name) != "." && string(name) != ".." {
			if !fn(binary.NativeEndian.Uint64(rec[0:8]), rec[18], name) {
				return false
			}
		}
	}
	return true
}
