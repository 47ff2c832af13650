package share

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hugelgupf/p9/linux"
	"github.com/hugelgupf/p9/p9"
	"golang.org/x/sys/unix"
)

// socketPair returns two connected unix stream sockets.
func socketPair(tb testing.TB) (net.Conn, net.Conn) {
	tb.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatalf("socketpair: %v", err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			tb.Fatalf("FileConn: %v", err)
		}
		return c
	}
	return conn(fds[0]), conn(fds[1])
}

// serve starts a p9 server for root on one end of a socket pair and returns
// the attached root of a p9 client on the other end.
func serve(tb testing.TB, root string, opts Options, msize uint32) p9.File {
	tb.Helper()
	att, closer, err := Attacher(root, opts)
	if err != nil {
		tb.Fatal(err)
	}
	sc, cc := socketPair(tb)
	done := make(chan struct{})
	go func() {
		defer close(done)
		Serve(att, sc)
	}()
	cl, err := p9.NewClient(cc, p9.WithMessageSize(msize))
	if err != nil {
		tb.Fatalf("p9.NewClient: %v", err)
	}
	rootFile, err := cl.Attach("")
	if err != nil {
		tb.Fatalf("attach: %v", err)
	}
	tb.Cleanup(func() {
		cl.Close()
		cc.Close()
		<-done
		closer.Close()
	})
	return rootFile
}

// layout is a temp dir holding the shared root and an "outside" directory
// with a sentinel file that must never change.
type layout struct {
	base, root, outside, secret string
	secretInfo                  snapshot
	outsideList                 []string
}

type snapshot struct {
	data  []byte
	mode  os.FileMode
	mtime time.Time
	nlink uint64
}

func takeSnapshot(tb testing.TB, p string) snapshot {
	tb.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		tb.Fatalf("lstat %s: %v", p, err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		tb.Fatalf("read %s: %v", p, err)
	}
	return snapshot{data: data, mode: fi.Mode(), mtime: fi.ModTime(), nlink: uint64(fi.Sys().(*syscall.Stat_t).Nlink)}
}

func listDir(tb testing.TB, p string) []string {
	tb.Helper()
	ents, err := os.ReadDir(p)
	if err != nil {
		tb.Fatalf("readdir %s: %v", p, err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func newLayout(tb testing.TB) *layout {
	tb.Helper()
	base := tb.TempDir()
	l := &layout{
		base:    base,
		root:    filepath.Join(base, "root"),
		outside: filepath.Join(base, "outside"),
	}
	l.secret = filepath.Join(l.outside, "secret")
	for _, d := range []string{l.root, l.outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	if err := os.WriteFile(l.secret, []byte("do not touch"), 0o644); err != nil {
		tb.Fatal(err)
	}
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	if err := os.Chtimes(l.secret, old, old); err != nil {
		tb.Fatal(err)
	}
	l.secretInfo = takeSnapshot(tb, l.secret)
	l.outsideList = listDir(tb, l.outside)
	return l
}

// checkOutside fails the test if anything outside the root changed.
func (l *layout) checkOutside(tb testing.TB) {
	tb.Helper()
	got := takeSnapshot(tb, l.secret)
	if !bytes.Equal(got.data, l.secretInfo.data) || got.mode != l.secretInfo.mode ||
		!got.mtime.Equal(l.secretInfo.mtime) || got.nlink != l.secretInfo.nlink {
		tb.Fatalf("sentinel outside the root changed: before %+v, after %+v", l.secretInfo, got)
	}
	if got := listDir(tb, l.outside); strings.Join(got, "/") != strings.Join(l.outsideList, "/") {
		tb.Fatalf("outside directory entries changed: before %v, after %v", l.outsideList, got)
	}
	if got := listDir(tb, l.base); strings.Join(got, "/") != "outside/root" {
		tb.Fatalf("entries next to the root changed: %v", got)
	}
}

func walk(tb testing.TB, from p9.File, names ...string) p9.File {
	tb.Helper()
	_, f, err := from.Walk(names)
	if err != nil {
		tb.Fatalf("walk %v: %v", names, err)
	}
	tb.Cleanup(func() { f.Close() })
	return f
}

func wantErrno(tb testing.TB, what string, err error, want ...linux.Errno) {
	tb.Helper()
	for _, w := range want {
		if errors.Is(err, w) {
			return
		}
	}
	tb.Fatalf("%s: got error %v, want one of %v", what, err, want)
}

func writeFile(tb testing.TB, p, content string) {
	tb.Helper()
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// processUmask reads the umask from /proc without changing it.
func processUmask(tb testing.TB) string {
	tb.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			return strings.TrimSpace(v)
		}
	}
	tb.Fatal("no Umask line in /proc/self/status")
	return ""
}

// rawConn is a hand-written 9P2000.L client for the requests p9's client
// cannot send (Tgetlock, Txattrcreate, Txattrwalk, counts beyond msize,
// walks of more than 16 names), talking to Serve over a socket pair. Fid 0
// is the attached root.
type rawConn struct {
	tb    testing.TB
	c     net.Conn
	tag   uint16
	msize uint32 // from Rversion
}

func serveRaw(tb testing.TB, root string, msize uint32) *rawConn {
	tb.Helper()
	r, _, _ := serveRawGuard(tb, root, msize)
	return r
}

// serveRawGuard is serveRaw that also returns the guard and the server's end
// of the socket pair.
func serveRawGuard(tb testing.TB, root string, msize uint32) (*rawConn, *guard, net.Conn) {
	tb.Helper()
	att, closer, err := Attacher(root, Options{})
	if err != nil {
		tb.Fatal(err)
	}
	sc, cc := socketPair(tb)
	g := newGuard(sc)
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.serve(att)
	}()
	tb.Cleanup(func() {
		cc.Close()
		<-done
		closer.Close()
	})
	r := &rawConn{tb: tb, c: cc}
	typ, body := r.rpc(msgTversion, le32(msize), pstr("9P2000.L"))
	if typ != msgTversion+1 {
		tb.Fatalf("Tversion: reply type %d", typ)
	}
	r.msize = binary.LittleEndian.Uint32(body)
	r.ok(r.rpc(104, le32(0), le32(^uint32(0)), pstr("root"), pstr(""), le32(^uint32(0)))) // Tattach
	return r, g, sc
}

// rpc sends one request made of parts and returns the reply's type and body.
func (r *rawConn) rpc(typ byte, parts ...[]byte) (byte, []byte) {
	r.tb.Helper()
	r.tag++
	r.send(r.tag, typ, parts...)
	return r.recv(r.tag)
}

func (r *rawConn) send(tag uint16, typ byte, parts ...[]byte) {
	r.tb.Helper()
	msg := make([]byte, hdrLen)
	for _, p := range parts {
		msg = append(msg, p...)
	}
	binary.LittleEndian.PutUint32(msg[0:4], uint32(len(msg)))
	msg[4] = typ
	binary.LittleEndian.PutUint16(msg[5:7], tag)
	if _, err := r.c.Write(msg); err != nil {
		r.tb.Fatalf("send type %d: %v", typ, err)
	}
}

// recv reads one reply, which must carry tag and fit in msize.
func (r *rawConn) recv(tag uint16) (byte, []byte) {
	r.tb.Helper()
	var hdr [hdrLen]byte
	if _, err := io.ReadFull(r.c, hdr[:]); err != nil {
		r.tb.Fatalf("reading a reply: %v", err)
	}
	size := binary.LittleEndian.Uint32(hdr[0:4])
	if r.msize != 0 && size > r.msize {
		r.tb.Fatalf("reply type %d of %d bytes exceeds msize %d", hdr[4], size, r.msize)
	}
	if got := binary.LittleEndian.Uint16(hdr[5:7]); got != tag {
		r.tb.Fatalf("reply tag %d, want %d", got, tag)
	}
	body := make([]byte, size-hdrLen)
	if _, err := io.ReadFull(r.c, body); err != nil {
		r.tb.Fatalf("reading a reply body: %v", err)
	}
	return hdr[4], body
}

// ok fails unless the reply is a success.
func (r *rawConn) ok(typ byte, body []byte) []byte {
	r.tb.Helper()
	if typ == msgRlerror {
		r.tb.Fatalf("unexpected error reply: %v", linux.Errno(binary.LittleEndian.Uint32(body)))
	}
	return body
}

// errno returns the error of an Rlerror reply, 0 for any other reply.
func replyErrno(typ byte, body []byte) linux.Errno {
	if typ != msgRlerror || len(body) < 4 {
		return 0
	}
	return linux.Errno(binary.LittleEndian.Uint32(body))
}

// walkOpen walks fid 0 to names as newfid and opens it read-only.
func (r *rawConn) walkOpen(newfid uint32, names ...string) {
	r.tb.Helper()
	r.ok(r.rpc(msgTwalk, twalkBody(0, newfid, names...)))
	r.ok(r.rpc(msgTlopen, le32(newfid), le32(0)))
}

func twalkBody(fid, newfid uint32, names ...string) []byte {
	b := append(le32(fid), le32(newfid)...)
	b = append(b, le16(uint16(len(names)))...)
	for _, n := range names {
		b = append(b, pstr(n)...)
	}
	return b
}

func le16(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
func pstr(s string) []byte { return append(le16(uint16(len(s))), s...) }

// openFDs counts this process's descriptors open on the file at path (by
// /proc/self/fd), so that descriptors other tests close in the background do
// not count.
func openFDs(tb testing.TB, path string) int {
	tb.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && target == path {
			n++
		}
	}
	return n
}

// unreadBytes is how many bytes wait unread in the receive queue of c.
func unreadBytes(tb testing.TB, c net.Conn) int {
	tb.Helper()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		tb.Fatal(err)
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); err != nil {
		tb.Fatal(err)
	}
	if ierr != nil {
		tb.Fatalf("SIOCINQ: %v", ierr)
	}
	return n
}
