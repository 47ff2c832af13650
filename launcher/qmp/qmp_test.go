package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Lines recorded from QEMU 7.2.22 (see shared notes §7).
const (
	greeting        = `{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18"}, "capabilities": ["oob"]}}`
	notNegotiated   = `{"error": {"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}}`
	powerdownEvent  = `{"timestamp": {"seconds": 1763780000, "microseconds": 123456}, "event": "POWERDOWN"}`
	shutdownEvent   = `{"timestamp": {"seconds": 1763780001, "microseconds": 5}, "event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}}`
	testDialTimeout = 10 * time.Second
)

// peer is the server side of one fake QMP connection.
type peer struct {
	t    *testing.T
	conn *net.UnixConn
	r    *bufio.Reader
}

// send writes one line the way QEMU does (CRLF).
func (p *peer) send(line string) {
	if _, err := p.conn.Write([]byte(line + "\r\n")); err != nil {
		p.t.Errorf("fake QMP server: write: %v", err)
	}
}

type received struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments"`
	ID        json.RawMessage `json:"id"`
}

// recv reads one command and checks its name.
func (p *peer) recv(want string) received {
	line, err := p.r.ReadBytes('\n')
	if err != nil {
		p.t.Errorf("fake QMP server: waiting for %q: %v", want, err)
		return received{}
	}
	var c received
	if err := json.Unmarshal(line, &c); err != nil {
		p.t.Errorf("fake QMP server: client sent invalid JSON %q: %v", line, err)
	}
	if c.Execute != want {
		p.t.Errorf("fake QMP server: got command %q, want %q", c.Execute, want)
	}
	return c
}

// reply sends a reply that carries the command's id.
func (p *peer) reply(c received, member string) {
	if c.ID == nil {
		p.t.Errorf("fake QMP server: command %q has no id", c.Execute)
		p.send(fmt.Sprintf(`{%s}`, member))
		return
	}
	p.send(fmt.Sprintf(`{%s, "id": %s}`, member, c.ID))
}

// negotiate plays the greeting and the capabilities negotiation like QEMU:
// commands other than qmp_capabilities get CommandNotFound.
func (p *peer) negotiate() {
	p.send(greeting)
	for {
		line, err := p.r.ReadBytes('\n')
		if err != nil {
			p.t.Errorf("fake QMP server: waiting for qmp_capabilities: %v", err)
			return
		}
		var c received
		json.Unmarshal(line, &c)
		if c.Execute != "qmp_capabilities" {
			p.t.Errorf("fake QMP server: client sent %q before qmp_capabilities", c.Execute)
			p.send(notNegotiated)
			continue
		}
		p.reply(c, `"return": {}`)
		return
	}
}

// serve starts a fake QMP server that runs script for one connection and
// returns its socket path. The test waits for script to finish.
func serve(t *testing.T, script func(p *peer)) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "q.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := l.AcceptUnix()
		if err != nil {
			return // listener closed: the test did not connect
		}
		defer conn.Close()
		script(&peer{t: t, conn: conn, r: bufio.NewReader(conn)})
	}()
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	return path
}

func dial(t *testing.T, path string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testDialTimeout)
	defer cancel()
	c, err := Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestTranscript plays the verified QEMU 7.2 transcript: greeting,
// negotiation, query-status, system_powerdown with the event before the
// reply, quit with SHUTDOWN before the reply and the socket closing.
func TestTranscript(t *testing.T) {
	path := serve(t, func(p *peer) {
		p.negotiate()
		c := p.recv("query-status")
		p.reply(c, `"return": {"status": "running", "singlestep": false, "running": true}`)
		c = p.recv("system_powerdown")
		p.send(powerdownEvent)
		p.reply(c, `"return": {}`)
		c = p.recv("quit")
		p.send(shutdownEvent)
		p.reply(c, `"return": {}`)
	})
	ctx := ctxT(t)
	c := dial(t, path)
	if c.Version.String() != "7.2.22" || !strings.HasPrefix(c.Version.Package, "Debian") {
		t.Errorf("version = %+v, want 7.2.22 Debian...", c.Version)
	}
	if len(c.Capabilities) != 1 || c.Capabilities[0] != "oob" {
		t.Errorf("capabilities = %q, want [oob]", c.Capabilities)
	}
	st, err := c.QueryStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st != (Status{Status: "running", Running: true}) {
		t.Errorf("status = %+v", st)
	}
	if err := c.SystemPowerdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	// Both events arrived before their replies and were queued.
	ev, err := c.WaitEvent(ctx, "SHUTDOWN")
	if err != nil {
		t.Fatal(err)
	}
	var data struct {
		Guest  bool   `json:"guest"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(ev.Data, &data); err != nil || data.Reason != "host-qmp-quit" || data.Guest {
		t.Errorf("SHUTDOWN data = %s (%v)", ev.Data, err)
	}
	if want := time.Unix(1763780001, 5000); !ev.Time.Equal(want) {
		t.Errorf("SHUTDOWN time = %v, want %v", ev.Time, want)
	}
	ev, err = c.WaitEvent(ctx, "POWERDOWN")
	if err != nil || ev.Name != "POWERDOWN" || ev.Data != nil {
		t.Fatalf("WaitEvent(POWERDOWN) = %+v, %v", ev, err)
	}
	// The server has closed the connection: a further wait says so.
	_, err = c.WaitEvent(ctx, "POWERDOWN")
	if !errors.Is(err, ErrDisconnected) {
		t.Errorf("WaitEvent after close: %v, want ErrDisconnected", err)
	}
}

// TestErrorReply checks that {"error": ...} becomes a *Error and that the
// connection stays usable.
func TestErrorReply(t *testing.T) {
	path := serve(t, func(p *peer) {
		p.negotiate()
		c := p.recv("device_del")
		if string(c.Arguments) != `{"id":"nope"}` {
			t.Errorf("arguments = %s", c.Arguments)
		}
		p.reply(c, `"error": {"class": "DeviceNotFound", "desc": "Device 'nope' not found"}`)
		c = p.recv("query-status")
		p.reply(c, `"return": {"status": "paused", "running": false, "future-field": [1, 2]}`)
	})
	ctx := ctxT(t)
	c := dial(t, path)
	_, err := c.Execute(ctx, "device_del", map[string]string{"id": "nope"})
	var qe *Error
	if !errors.As(err, &qe) || qe.Class != "DeviceNotFound" || qe.Desc != "Device 'nope' not found" {
		t.Fatalf("err = %v, want *Error DeviceNotFound", err)
	}
	if !strings.Contains(err.Error(), "device_del") {
		t.Errorf("error %q does not name the command", err)
	}
	st, err := c.QueryStatus(ctx)
	if err != nil || st != (Status{Status: "paused"}) {
		t.Fatalf("QueryStatus = %+v, %v", st, err)
	}
}

// TestNegotiationRefused: an error to qmp_capabilities fails Dial.
func TestNegotiationRefused(t *testing.T) {
	path := serve(t, func(p *peer) {
		p.send(greeting)
		p.send(notNegotiated) // reply without id, as for unparsable input
		p.r.ReadBytes('\n')
	})
	ctx := ctxT(t)
	_, err := Dial(ctx, path)
	var qe *Error
	if !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Fatalf("Dial err = %v, want CommandNotFound", err)
	}
}

// TestNoGreeting: a server that accepts but never greets (e.g. QEMU busy
// with another QMP client) makes Dial fail when ctx ends.
func TestNoGreeting(t *testing.T) {
	release := make(chan struct{})
	path := serve(t, func(p *peer) { <-release })
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := Dial(ctx, path)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial err = %v, want DeadlineExceeded", err)
	}
	if !strings.Contains(err.Error(), "greeting") || !strings.Contains(err.Error(), "one QMP client at a time") {
		t.Errorf("error does not explain itself: %v", err)
	}
}

// TestCancelWithoutDeadline: cancelling a ctx without deadline interrupts a
// blocked Execute.
func TestCancelWithoutDeadline(t *testing.T) {
	release := make(chan struct{})
	path := serve(t, func(p *peer) {
		p.negotiate()
		p.recv("query-status")
		<-release
	})
	defer close(release)
	c := dial(t, path)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err := c.QueryStatus(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// TestInterruptedLineResumes: a reply interrupted mid-line by ctx is not
// lost; the next call skips the late reply and gets its own.
func TestInterruptedLineResumes(t *testing.T) {
	halfSent := make(chan struct{})
	resume := make(chan struct{})
	path := serve(t, func(p *peer) {
		p.negotiate()
		c := p.recv("query-status")
		late := fmt.Sprintf(`{"return": {"status": "running", "running": true}, "id": %s}`, c.ID)
		p.conn.Write([]byte(late[:20]))
		close(halfSent)
		<-resume
		p.conn.Write([]byte(late[20:] + "\r\n"))
		p.send(powerdownEvent)
		c = p.recv("query-status")
		p.reply(c, `"return": {"status": "paused", "running": false}`)
	})
	c := dial(t, path)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-halfSent
		cancel()
	}()
	if _, err := c.QueryStatus(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("first QueryStatus err = %v, want context.Canceled", err)
	}
	close(resume)
	st, err := c.QueryStatus(ctxT(t))
	if err != nil || st.Status != "paused" {
		t.Fatalf("second QueryStatus = %+v, %v; want paused (late reply to the first must be skipped)", st, err)
	}
	if _, err := c.WaitEvent(ctxT(t), "POWERDOWN"); err != nil {
		t.Errorf("event between the replies was not queued: %v", err)
	}
}

// TestWaitEvent: events are matched by name, others stay queued, late
// replies are ignored, and ctx bounds the wait.
func TestWaitEvent(t *testing.T) {
	path := serve(t, func(p *peer) {
		p.negotiate()
		p.send(`{"return": {}, "id": 999}`)
		p.send(`{"timestamp": {"seconds": 1, "microseconds": 0}, "event": "RTC_CHANGE", "data": {"offset": 0}}`)
		p.send(shutdownEvent)
		p.r.ReadBytes('\n') // hold the connection open until the client closes
	})
	c := dial(t, path)
	ev, err := c.WaitEvent(ctxT(t), "SHUTDOWN")
	if err != nil || ev.Name != "SHUTDOWN" {
		t.Fatalf("WaitEvent = %+v, %v", ev, err)
	}
	if ev, err := c.WaitEvent(ctxT(t), "RTC_CHANGE"); err != nil || string(ev.Data) != `{"offset": 0}` {
		t.Fatalf("queued RTC_CHANGE = %+v, %v", ev, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.WaitEvent(ctx, "SHUTDOWN"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitEvent with nothing coming: %v, want DeadlineExceeded", err)
	}
}

// TestQuitConnectionClosed: QEMU may close the socket after quit without a
// reply (EOF) ...
func TestQuitConnectionClosed(t *testing.T) {
	path := serve(t, func(p *peer) {
		p.negotiate()
		p.recv("quit")
		p.send(shutdownEvent)
	})
	c := dial(t, path)
	if err := c.Quit(ctxT(t)); err != nil {
		t.Fatalf("Quit = %v, want nil after EOF", err)
	}
	if _, err := c.QueryStatus(ctxT(t)); !errors.Is(err, ErrDisconnected) {
		t.Errorf("QueryStatus after quit: %v, want ErrDisconnected", err)
	}
}

// ... or reset it: closing a unix socket with unread data in its receive
// queue makes the peer's read fail with ECONNRESET.
func TestQuitConnectionReset(t *testing.T) {
	path := serve(t, func(p *peer) {
		p.negotiate()
		// Wait until the quit command is queued, without reading it.
		raw, err := p.conn.SyscallConn()
		if err != nil {
			t.Error(err)
			return
		}
		var buf [1]byte
		var perr error
		raw.Read(func(fd uintptr) bool {
			_, _, perr = unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK)
			return perr != unix.EAGAIN
		})
		if perr != nil {
			t.Error(perr)
		}
	})
	c := dial(t, path)
	_, err := c.Execute(ctxT(t), "quit", nil)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("raw quit err = %v, want ECONNRESET (the test setup is wrong)", err)
	}
	if err := c.Quit(ctxT(t)); err != nil {
		t.Fatalf("Quit after reset = %v, want nil", err)
	}
}

func TestDialErrors(t *testing.T) {
	dir := t.TempDir()
	ctx := ctxT(t)

	_, err := Dial(ctx, filepath.Join(dir, "missing.sock"))
	if !errors.Is(err, syscall.ENOENT) || !strings.Contains(err.Error(), "QEMU is not running or was started without -qmp") {
		t.Errorf("missing socket: %v", err)
	}

	long := "/tmp/" + strings.Repeat("d", 120) + "/qmp.sock"
	if _, err := Dial(ctx, long); err == nil || !strings.Contains(err.Error(), "limited to 107 bytes") {
		t.Errorf("long path: %v", err)
	}

	stale := filepath.Join(dir, "stale.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	_, err = Dial(ctx, stale)
	want := "QMP socket " + stale + ": connection refused: QEMU is not running"
	if !errors.Is(err, syscall.ECONNREFUSED) || !strings.Contains(err.Error(), want) {
		t.Errorf("stale socket: %v, want it to contain %q", err, want)
	}
}

func TestNotQMP(t *testing.T) {
	path := serve(t, func(p *peer) {
		p.send("QEMU 7.2.22 monitor - type 'help' for more information")
	})
	_, err := Dial(ctxT(t), path)
	if err == nil || !strings.Contains(err.Error(), "not a QMP monitor") {
		t.Fatalf("Dial on a human monitor: %v", err)
	}
}

// TestLongLine: replies longer than bufio.Scanner's 64 KiB default work.
func TestLongLine(t *testing.T) {
	big := strings.Repeat("x", 200<<10)
	path := serve(t, func(p *peer) {
		p.negotiate()
		c := p.recv("human-monitor-command")
		p.reply(c, fmt.Sprintf(`"return": %q`, big))
	})
	c := dial(t, path)
	raw, err := c.Execute(ctxT(t), "human-monitor-command", map[string]string{"command-line": "info mtree"})
	if err != nil {
		t.Fatal(err)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil || s != big {
		t.Fatalf("long reply: %d bytes, %v", len(s), err)
	}
}
