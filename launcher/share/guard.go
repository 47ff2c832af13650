package share

import (
	"encoding/binary"
	"io"
	"sync"

	"github.com/hugelgupf/p9/linux"
	"github.com/hugelgupf/p9/p9"
)

// Serve serves att over conn, one 9P2000.L connection, until the connection
// ends. Use it instead of p9.NewServer(att).Handle(conn, conn): a guard sits
// between conn and the p9 server and polices the requests that p9.Server
// (hugelgupf/p9 v0.4.1) handles itself, without calling the p9.File methods
// of this package:
//
//   - Txattrcreate and Txattrwalk are refused with EOPNOTSUPP (extended
//     attributes are not supported). p9.Server would otherwise accept an
//     Txattrcreate of any size and append every Twrite on that fid to a
//     buffer in memory until Tclunk (p9/handlers.go:1010-1032, 796-804): a
//     guest could pin host memory without bound. It answers Txattrwalk with
//     EINVAL whatever the file says (p9/handlers.go:986-988).
//   - Tgetlock is answered "unlocked" (see getlockReply); p9.Server does not
//     know the message and answers EIO, so fcntl(F_GETLK) fails in the guest.
//   - Tversion's msize is capped at guardMaxMsize, and the count of Tread
//     and Treaddir at the negotiated msize minus the reply header, so no
//     reply exceeds msize. p9.Server caps msize at 4 MiB only, and answers a
//     Tread of up to msize bytes with an Rread of msize+11 bytes (one larger
//     than msize panics in its handler, p9/handlers.go:709-730), and a
//     Treaddir with as many entries as its count asks.
//   - Twalk with more than maxWalkNames names is refused with EINVAL, as the
//     9P spec's MAXWELEM says (QEMU does the same); the Rwalk stays small.
//   - A second Tlopen or Tlcreate on a fid while one is in flight is refused
//     with EINVAL, the answer p9.Server gives to an open of an opened fid:
//     p9.Server sets its "opened" flag outside its locks
//     (p9/handlers.go:315-340), so two concurrent opens race in it.
//   - At most maxInFlight requests are with p9.Server at a time. It starts a
//     goroutine per request it receives while others are being handled
//     (p9/server.go:506-513), each holding an msize buffer for a Tread and
//     the payload of a Twrite: a guest that sends requests without reading
//     the replies would otherwise pin memory without bound.
func Serve(att p9.Attacher, conn io.ReadWriteCloser) {
	newGuard(conn).serve(att)
}

func newGuard(conn io.ReadWriteCloser) *guard {
	g := &guard{
		conn:    conn,
		opening: map[uint32]uint16{},
		openTag: map[uint16]uint32{},
	}
	g.cond = sync.NewCond(&g.mu)
	return g
}

func (g *guard) serve(att p9.Attacher) {
	p9.NewServer(att).Handle(guardReader{g}, guardWriter{g})
}

// 9P2000.L message types and sizes the guard uses (Linux
// include/net/9p/9p.h; hugelgupf/p9 p9/p9.go:314-382).
const (
	msgRlerror      = 7
	msgTlopen       = 12
	msgTlcreate     = 14
	msgTxattrwalk   = 30
	msgTxattrcreate = 32
	msgTreaddir     = 40
	msgTgetlock     = 54
	msgRgetlock     = 55
	msgTversion     = 100
	msgTwalk        = 110
	msgTread        = 116

	// hdrLen is size[4] type[1] tag[2].
	hdrLen = 7
	// ioHdrLen is the header of Rread and Rreaddir: hdrLen and count[4].
	ioHdrLen = hdrLen + 4
	// p9MaxLength is p9.Server's largest message (p9/transport.go:63).
	p9MaxLength = 4 << 20
	// guardMaxMsize is the largest msize the server agrees to: the Linux
	// fd and tcp transports' own maximum, so the guest's mount is unaffected.
	guardMaxMsize = 1 << 20
	// maxWalkNames is MAXWELEM of walk(5) (P9_MAXWELEM in Linux).
	maxWalkNames = 16
	// lockTypeUnlck is P9_LOCK_TYPE_UNLCK.
	lockTypeUnlck = 2
	// maxInFlight bounds the requests p9.Server handles at once: with an
	// msize of 1 MiB, 64 MiB of read buffers and as much of write payloads.
	// The Linux client has one request per blocked guest thread (plus
	// readahead) in flight; more wait in the socket.
	maxInFlight = 64
)

// guard is the state of one connection's guard.
type guard struct {
	conn io.ReadWriteCloser

	// Request side. Only the goroutine p9.Server has receiving reads (its
	// recvMu serializes Read), so these need no lock.
	pending []byte // rest of a message read whole, to hand to p9.Server
	stream  int64  // bytes of the current message to copy straight from conn
	msize   uint32 // from the last Tversion (0 before it)

	// sendMu is held from the first to the last byte of every reply
	// p9.Server writes (it writes one reply in several Writes) and while the
	// guard writes its own, so replies never interleave.
	sendMu  sync.Mutex
	wHdr    [hdrLen]byte
	wHave   int   // header bytes of the current reply seen
	wRest   int64 // body bytes of the current reply still to write
	wLocked bool  // sendMu held for the current reply
	wErr    error // the connection failed: nothing more is written

	mu       sync.Mutex
	cond     *sync.Cond        // on mu: inflight went down, or broken
	inflight int               // requests passed to p9.Server not yet answered
	broken   bool              // a reply could not be written
	opening  map[uint32]uint16 // fid -> tag of its Tlopen/Tlcreate in flight
	openTag  map[uint16]uint32 // the reverse
}

type guardReader struct{ g *guard }

// Read hands p9.Server the requests it may see, one message at a time.
func (r guardReader) Read(p []byte) (int, error) {
	g := r.g
	for len(g.pending) == 0 && g.stream == 0 {
		if err := g.next(); err != nil {
			return 0, err
		}
	}
	if len(g.pending) > 0 {
		n := copy(p, g.pending)
		g.pending = g.pending[n:]
		return n, nil
	}
	if int64(len(p)) > g.stream {
		p = p[:g.stream]
	}
	n, err := g.conn.Read(p)
	g.stream -= int64(n)
	return n, err
}

func (r guardReader) Close() error { return r.g.conn.Close() }

// next reads the next request's header and decides what p9.Server gets.
func (g *guard) next() error {
	g.mu.Lock()
	for g.inflight >= maxInFlight && !g.broken {
		g.cond.Wait()
	}
	g.mu.Unlock()
	var hdr [hdrLen]byte
	if _, err := io.ReadFull(g.conn, hdr[:]); err != nil {
		return err
	}
	size := binary.LittleEndian.Uint32(hdr[0:4])
	typ, tag := hdr[4], binary.LittleEndian.Uint16(hdr[5:7])
	limit := uint32(p9MaxLength)
	if g.msize != 0 {
		limit = g.msize
	}
	switch {
	case size < hdrLen || size > limit:
		// p9.Server refuses it and ends the connection without reading
		// further (p9/transport.go:150-159).
		g.pending = hdr[:]
		return nil
	case !inspected(typ):
		g.pending = hdr[:]
		g.stream = int64(size - hdrLen)
		g.forwarded()
		return nil
	}
	msg := make([]byte, size)
	copy(msg, hdr[:])
	if _, err := io.ReadFull(g.conn, msg[hdrLen:]); err != nil {
		return err
	}
	if reply := g.inspect(typ, tag, msg[hdrLen:]); reply != nil {
		return g.send(reply)
	}
	g.pending = msg
	g.forwarded()
	return nil
}

// forwarded counts a request passed to p9.Server, which answers every
// request (p9/server.go:517-550) except one reusing a tag in flight, which
// only a client breaking the protocol sends, to its own cost.
func (g *guard) forwarded() {
	g.mu.Lock()
	g.inflight++
	g.mu.Unlock()
}

func inspected(typ byte) bool {
	switch typ {
	case msgTversion, msgTread, msgTreaddir, msgTwalk, msgTlopen, msgTlcreate,
		msgTxattrwalk, msgTxattrcreate, msgTgetlock:
		return true
	}
	return false
}

// inspect checks one request (body is everything after the header, and may
// be rewritten in place) and returns the guard's own reply, or nil to pass
// the request to p9.Server. A body too short for its fields is passed on:
// p9.Server answers it with an error.
func (g *guard) inspect(typ byte, tag uint16, body []byte) []byte {
	le := binary.LittleEndian
	switch typ {
	case msgTversion: // msize[4] version[s]
		if len(body) >= 4 {
			m := min(le.Uint32(body[0:4]), guardMaxMsize)
			le.PutUint32(body[0:4], m)
			if m != 0 {
				g.msize = m
			}
		}
	case msgTread, msgTreaddir: // fid[4] offset[8] count[4]
		if len(body) >= 16 {
			limit := uint32(p9MaxLength)
			if g.msize != 0 {
				limit = g.msize
			}
			limit = max(limit, ioHdrLen) - ioHdrLen
			if le.Uint32(body[12:16]) > limit {
				le.PutUint32(body[12:16], limit)
			}
		}
	case msgTwalk: // fid[4] newfid[4] nwname[2] nwname*(wname[s])
		if len(body) >= 10 && le.Uint16(body[8:10]) > maxWalkNames {
			return rlerror(tag, linux.EINVAL)
		}
	case msgTlopen, msgTlcreate: // fid[4] ...
		if len(body) >= 4 {
			return g.startOpen(tag, le.Uint32(body[0:4]))
		}
	case msgTxattrwalk, msgTxattrcreate:
		return rlerror(tag, linux.EOPNOTSUPP)
	case msgTgetlock:
		return getlockReply(tag, body)
	}
	return nil
}

// startOpen records an open of fid in flight, or refuses it if one is.
func (g *guard) startOpen(tag uint16, fid uint32) []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, busy := g.opening[fid]; busy {
		return rlerror(tag, linux.EINVAL)
	}
	if _, reused := g.openTag[tag]; !reused {
		// (A client reusing the tag of a request in flight breaks the
		// protocol; p9.Server drops that request.)
		g.opening[fid] = tag
		g.openTag[tag] = fid
	}
	return nil
}

// replied notes that p9.Server is sending the reply for tag.
func (g *guard) replied(tag uint16) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.inflight > 0 {
		g.inflight--
		g.cond.Signal()
	}
	if fid, ok := g.openTag[tag]; ok {
		delete(g.openTag, tag)
		delete(g.opening, fid)
	}
}

// getlockReply answers Tgetlock
// (fid[4] type[1] start[8] length[8] proc_id[4] client_id[s]) with Rgetlock
// (type[1] start[8] length[8] proc_id[4] client_id[s]) saying the range is
// unlocked, consistently with Tlock, which grants every lock without taking
// one on the host (see (*file).Lock): no lock taken through this server can
// conflict with another. The Linux client asks the server only when no lock
// held in the guest conflicts, and for type P9_LOCK_TYPE_UNLCK in the reply
// it sets F_UNLCK and ignores the other fields (fs/9p/vfs_file.c,
// v9fs_file_getlock: posix_test_lock, then p9_client_getlock_dotl, then the
// switch on glock.type; net/9p/client.c, p9_client_getlock_dotl reads the
// reply as "bqqds"). QEMU's 9p server answers the same way: type
// P9_LOCK_TYPE_UNLCK and the request's other fields (hw/9pfs/9p.c,
// v9fs_getlock). As in QEMU, the range, proc_id and client_id are echoed.
// Like Txattr*, the fid is not looked up.
func getlockReply(tag uint16, body []byte) []byte {
	const fixed = 4 + 1 + 8 + 8 + 4 + 2
	if len(body) < fixed {
		return rlerror(tag, linux.EINVAL)
	}
	end := fixed + int(binary.LittleEndian.Uint16(body[fixed-2:fixed]))
	if len(body) < end {
		return rlerror(tag, linux.EINVAL)
	}
	rest := body[5:end] // start, length, proc_id, client_id
	msg := make([]byte, hdrLen+1+len(rest))
	binary.LittleEndian.PutUint32(msg[0:4], uint32(len(msg)))
	msg[4] = msgRgetlock
	binary.LittleEndian.PutUint16(msg[5:7], tag)
	msg[hdrLen] = lockTypeUnlck
	copy(msg[hdrLen+1:], rest)
	return msg
}

// rlerror encodes Rlerror: ecode[4].
func rlerror(tag uint16, errno linux.Errno) []byte {
	msg := make([]byte, hdrLen+4)
	binary.LittleEndian.PutUint32(msg[0:4], uint32(len(msg)))
	msg[4] = msgRlerror
	binary.LittleEndian.PutUint16(msg[5:7], tag)
	binary.LittleEndian.PutUint32(msg[7:11], uint32(errno))
	return msg
}

// send writes the guard's own reply between p9.Server's.
func (g *guard) send(msg []byte) error {
	g.sendMu.Lock()
	defer g.sendMu.Unlock()
	if g.wErr != nil {
		return g.wErr
	}
	if _, err := g.conn.Write(msg); err != nil {
		g.fail(err)
		return err
	}
	return nil
}

// fail records that the connection cannot take replies any more (sendMu
// held) and wakes the request side.
func (g *guard) fail(err error) {
	g.wErr = err
	g.mu.Lock()
	g.broken = true
	g.cond.Broadcast()
	g.mu.Unlock()
}

type guardWriter struct{ g *guard }

// Write passes p9.Server's replies on, noting each reply's tag, and holds
// sendMu from a reply's first byte to its last. p9.Server sends one reply at
// a time (its own sendMu), as a header Write and body Writes.
func (w guardWriter) Write(p []byte) (int, error) {
	g := w.g
	done := 0
	for len(p) > 0 {
		if !g.wLocked {
			g.sendMu.Lock()
			g.wLocked, g.wHave = true, 0
		}
		if g.wErr != nil {
			g.release()
			return done, g.wErr
		}
		var k int
		if g.wHave < hdrLen {
			k = copy(g.wHdr[g.wHave:], p)
		} else {
			k = int(min(int64(len(p)), g.wRest))
		}
		n, err := g.conn.Write(p[:k])
		done += n
		if err != nil {
			g.fail(err)
			g.release()
			return done, err
		}
		p = p[k:]
		if g.wHave < hdrLen {
			if g.wHave += k; g.wHave == hdrLen {
				g.wRest = max(int64(binary.LittleEndian.Uint32(g.wHdr[0:4]))-hdrLen, 0)
				g.replied(binary.LittleEndian.Uint16(g.wHdr[5:7]))
			}
		} else {
			g.wRest -= int64(k)
		}
		if g.wHave == hdrLen && g.wRest == 0 {
			g.release()
		}
	}
	return done, nil
}

func (g *guard) release() {
	g.wLocked = false
	g.sendMu.Unlock()
}

func (w guardWriter) Close() error { return w.g.conn.Close() }
