// Package qmp is a small client for the QEMU Machine Protocol (QMP) over a
// unix socket, covering what devvm needs: the handshake, query-status,
// system_powerdown, quit and waiting for asynchronous events.
//
// Protocol (docs/interop/qmp-spec.rst in QEMU; checked against QEMU 7.2):
// QEMU sends a greeting line {"QMP": {...}}, the client must send
// qmp_capabilities before any other command, every command carries an "id"
// that QEMU copies into its reply, lines containing "event" are asynchronous
// and may arrive before the reply of the command that caused them, errors
// are {"error": {"class": ..., "desc": ...}}. Lines end in CRLF.
//
// Start QEMU with -qmp unix:<path>,server=on,wait=off. QEMU serves one
// client per -qmp socket at a time: a second client connects but receives no
// greeting until the first one disconnects, so keep connections short.
package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// maxQueuedEvents bounds the events kept for WaitEvent; the oldest are
// dropped first. QEMU emits few events (RTC_CHANGE, POWERDOWN, SHUTDOWN, ...),
// so this only matters for a connection kept open for a very long time.
const maxQueuedEvents = 256

// maxSocketPath is the longest unix socket path Linux accepts (sun_path
// holds 108 bytes including the terminating NUL).
const maxSocketPath = 107

// ErrDisconnected is wrapped by errors caused by QEMU closing the QMP
// connection, usually because QEMU exited.
var ErrDisconnected = errors.New("QEMU closed the QMP connection")

// Error is an error reply from QEMU: {"error": {"class": ..., "desc": ...}}.
// Execute returns it wrapped; use errors.As to inspect it.
type Error struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("QEMU replied with error %s: %s", e.Class, e.Desc)
}

// Version is the QEMU version from the greeting.
type Version struct {
	Major   int    `json:"major"`
	Minor   int    `json:"minor"`
	Micro   int    `json:"micro"`
	Package string `json:"package"`
}

func (v Version) String() string {
	return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Micro)
}

// Event is an asynchronous QMP event such as SHUTDOWN or POWERDOWN.
type Event struct {
	Name string
	// Data is the event's "data" member, nil when the event has none.
	Data json.RawMessage
	// Time is when QEMU emitted the event (zero if QEMU sent no timestamp).
	Time time.Time
}

// Status is the reply of query-status. Status is QEMU's RunState, e.g.
// "running", "paused", "prelaunch", "shutdown", "guest-panicked".
type Status struct {
	Status  string `json:"status"`
	Running bool   `json:"running"`
}

// Client is one QMP connection. It is not safe for concurrent use: call its
// methods from one goroutine at a time. Close may be called from another
// goroutine to abort a blocked call.
type Client struct {
	path    string
	conn    net.Conn
	r       *bufio.Reader
	partial []byte // bytes of a line whose read was interrupted by ctx
	broken  error  // set once the connection is unusable
	nextID  uint64
	events  []Event

	// Version and Capabilities are from QEMU's greeting.
	Version      Version
	Capabilities []string
}

// Dial connects to the QMP socket at socketPath, reads QEMU's greeting and
// negotiates capabilities. ctx bounds the whole handshake.
func Dial(ctx context.Context, socketPath string) (*Client, error) {
	if len(socketPath) > maxSocketPath {
		return nil, fmt.Errorf("QMP socket path %s is %d bytes long; unix socket paths are limited to %d bytes: put the socket in a shorter directory", socketPath, len(socketPath), maxSocketPath)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socketPath)
	if err != nil {
		return nil, dialError(ctx, socketPath, err)
	}
	c := &Client{path: socketPath, conn: conn, r: bufio.NewReader(conn)}
	if err := c.handshake(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

func dialError(ctx context.Context, path string, err error) error {
	switch {
	case errors.Is(err, syscall.ENOENT):
		return fmt.Errorf("QMP socket %s does not exist: QEMU is not running or was started without -qmp: %w", path, err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("QMP socket %s: connection refused: QEMU is not running (stale socket file) or was started without -qmp: %w", path, err)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("QMP socket %s: permission denied: the VM was started by another user; run devvm as that user: %w", path, err)
	case errors.Is(err, syscall.ENOTSOCK):
		return fmt.Errorf("QMP socket %s is not a socket: the path is wrong or the file was replaced: %w", path, err)
	case ctx.Err() != nil:
		return fmt.Errorf("QMP socket %s: connecting: %w", path, ctx.Err())
	}
	return fmt.Errorf("QMP socket %s: connecting: %w", path, err)
}

func (c *Client) handshake(ctx context.Context) error {
	release := c.bind(ctx)
	defer release()

	line, err := c.readLine()
	if err != nil {
		err = c.ioError(ctx, "waiting for QEMU's greeting", err)
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return fmt.Errorf("%w (is it really a QMP socket? QEMU serves one QMP client at a time: another client, e.g. a second devvm command, may still be connected)", err)
		}
		return err
	}
	var greeting struct {
		QMP *struct {
			Version struct {
				QEMU struct {
					Major int `json:"major"`
					Minor int `json:"minor"`
					Micro int `json:"micro"`
				} `json:"qemu"`
				Package string `json:"package"`
			} `json:"version"`
			Capabilities []string `json:"capabilities"`
		} `json:"QMP"`
	}
	if err := json.Unmarshal(line, &greeting); err != nil || greeting.QMP == nil {
		return fmt.Errorf("QMP socket %s: expected QEMU's greeting {\"QMP\": ...} but got %q: the socket is not a QMP monitor (use -qmp, not -monitor)", c.path, truncate(line, 120))
	}
	v := greeting.QMP.Version
	c.Version = Version{Major: v.QEMU.Major, Minor: v.QEMU.Minor, Micro: v.QEMU.Micro, Package: v.Package}
	c.Capabilities = greeting.QMP.Capabilities

	if _, err := c.execute(ctx, "qmp_capabilities", nil); err != nil {
		return fmt.Errorf("QMP socket %s: negotiating capabilities: %w", c.path, err)
	}
	return nil
}

// Execute sends command with args (nil for none; anything encoding/json can
// marshal to an object) and returns the "return" member of QEMU's reply.
// Events read while waiting are queued for WaitEvent. An error reply is
// returned as a wrapped *Error.
func (c *Client) Execute(ctx context.Context, command string, args any) (json.RawMessage, error) {
	release := c.bind(ctx)
	defer release()
	return c.execute(ctx, command, args)
}

type request struct {
	Execute   string `json:"execute"`
	Arguments any    `json:"arguments,omitempty"`
	ID        uint64 `json:"id"`
}

// message is any line QEMU sends after the greeting.
type message struct {
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp *struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
	ID     json.RawMessage `json:"id"`
	Return json.RawMessage `json:"return"`
	Error  *Error          `json:"error"`
}

func (c *Client) execute(ctx context.Context, command string, args any) (json.RawMessage, error) {
	if c.broken != nil {
		return nil, c.broken
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("QMP %s on %s: %w", command, c.path, err)
	}
	c.nextID++
	id := c.nextID
	req, err := json.Marshal(request{Execute: command, Arguments: args, ID: id})
	if err != nil {
		return nil, fmt.Errorf("QMP %s: encoding the arguments: %w", command, err)
	}
	if _, err := c.conn.Write(append(req, '\n')); err != nil {
		err = c.ioError(ctx, "sending "+command, err)
		// A partly written command leaves the stream in an unknown state.
		c.broken = err
		return nil, err
	}
	for {
		m, err := c.readMessage(ctx, "waiting for the reply to "+command)
		if err != nil {
			return nil, err
		}
		if m.Event != "" {
			c.queue(m)
			continue
		}
		if m.Return == nil && m.Error == nil {
			continue // neither event nor reply: ignore
		}
		// QEMU copies our id into the reply. A reply without id is ours too:
		// QEMU omits it only when it could not parse the request, and we have
		// one request in flight. Other ids are late replies to requests whose
		// caller gave up (ctx ended); drop them.
		if m.ID != nil {
			var got uint64
			if json.Unmarshal(m.ID, &got) != nil || got != id {
				continue
			}
		}
		if m.Error != nil {
			return nil, fmt.Errorf("QMP %s on %s: %w", command, c.path, m.Error)
		}
		return m.Return, nil
	}
}

func (m message) event() Event {
	ev := Event{Name: m.Event, Data: m.Data}
	if m.Timestamp != nil && m.Timestamp.Seconds > 0 {
		ev.Time = time.Unix(m.Timestamp.Seconds, m.Timestamp.Microseconds*1000)
	}
	return ev
}

func (c *Client) queue(m message) {
	if len(c.events) >= maxQueuedEvents {
		c.events = c.events[1:]
	}
	c.events = append(c.events, m.event())
}

// readMessage reads and decodes one line.
func (c *Client) readMessage(ctx context.Context, doing string) (message, error) {
	line, err := c.readLine()
	if err != nil {
		return message{}, c.ioError(ctx, doing, err)
	}
	var m message
	if err := json.Unmarshal(line, &m); err != nil {
		err = fmt.Errorf("QMP socket %s: %s: QEMU sent a line that is not JSON (%q): %w", c.path, doing, truncate(line, 120), err)
		c.broken = err
		return message{}, err
	}
	return m, nil
}

// readLine returns the next non-empty line without its line ending. A read
// interrupted by a deadline keeps what it read for the next call, so a
// cancelled call does not corrupt the stream.
func (c *Client) readLine() ([]byte, error) {
	if c.broken != nil {
		return nil, c.broken
	}
	for {
		chunk, err := c.r.ReadBytes('\n')
		if err != nil {
			if isTimeout(err) {
				c.partial = append(c.partial, chunk...)
			}
			return nil, err
		}
		line := chunk
		if len(c.partial) > 0 {
			line = append(c.partial, chunk...)
			c.partial = nil
		}
		line = trimEOL(line)
		if len(line) > 0 {
			return line, nil
		}
	}
}

func trimEOL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// ioError turns a read/write error into a message for people and records it
// when the connection can no longer be used.
func (c *Client) ioError(ctx context.Context, doing string, err error) error {
	if isTimeout(err) {
		cause := ctx.Err()
		if cause == nil {
			// The conn deadline is ctx's deadline and can fire a moment
			// before ctx's own timer.
			cause = context.DeadlineExceeded
		}
		return fmt.Errorf("QMP socket %s: %s: %w", c.path, doing, cause)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		err = fmt.Errorf("QMP socket %s: %s: %w (QEMU exited or closed the monitor): %w", c.path, doing, ErrDisconnected, err)
	} else if errors.Is(err, net.ErrClosed) {
		err = fmt.Errorf("QMP socket %s: %s: the client was closed: %w", c.path, doing, err)
	} else {
		err = fmt.Errorf("QMP socket %s: %s: %w", c.path, doing, err)
	}
	c.broken = err
	return err
}

// aLongTimeAgo is a deadline in the past, used to interrupt blocked I/O.
var aLongTimeAgo = time.Unix(1, 0)

// bind makes ctx's deadline and cancellation apply to the connection until
// the returned function is called.
func (c *Client) bind(ctx context.Context) (release func()) {
	dl, _ := ctx.Deadline() // zero time (no deadline) when ctx has none
	c.conn.SetDeadline(dl)
	var mu sync.Mutex
	active := true
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if active {
			c.conn.SetDeadline(aLongTimeAgo)
		}
	})
	return func() {
		stop()
		mu.Lock()
		active = false
		mu.Unlock()
	}
}

// WaitEvent returns the first queued event called name, or reads from QEMU
// until one arrives or ctx ends. Other events read meanwhile stay queued.
func (c *Client) WaitEvent(ctx context.Context, name string) (Event, error) {
	for i, ev := range c.events {
		if ev.Name == name {
			c.events = append(c.events[:i], c.events[i+1:]...)
			return ev, nil
		}
	}
	release := c.bind(ctx)
	defer release()
	for {
		m, err := c.readMessage(ctx, "waiting for event "+name)
		if err != nil {
			return Event{}, err
		}
		if m.Event == "" {
			continue // a late reply to an abandoned command
		}
		if m.Event == name {
			return m.event(), nil
		}
		c.queue(m)
	}
}

// QueryStatus runs query-status.
func (c *Client) QueryStatus(ctx context.Context) (Status, error) {
	raw, err := c.Execute(ctx, "query-status", nil)
	if err != nil {
		return Status{}, err
	}
	var s Status
	if err := json.Unmarshal(raw, &s); err != nil {
		return Status{}, fmt.Errorf("QMP query-status on %s: unexpected reply %q: %w", c.path, truncate(raw, 120), err)
	}
	return s, nil
}

// SystemPowerdown presses the virtual ACPI power button. It returns at once;
// the guest may take a while to shut down or ignore it. Wait for the SHUTDOWN
// event or the process exit, then fall back to Quit.
func (c *Client) SystemPowerdown(ctx context.Context) error {
	_, err := c.Execute(ctx, "system_powerdown", nil)
	return err
}

// Quit makes QEMU exit immediately (like pulling the plug). QEMU may close
// the connection before or after its reply; both count as success, as does a
// connection QEMU had already closed (QEMU closes QMP only when exiting).
// Wait for the process to exit to be sure it is gone.
func (c *Client) Quit(ctx context.Context) error {
	_, err := c.Execute(ctx, "quit", nil)
	if err != nil && errors.Is(err, ErrDisconnected) {
		return nil
	}
	return err
}

// Close closes the connection; a call blocked in another goroutine returns
// with an error.
func (c *Client) Close() error {
	return c.conn.Close()
}
