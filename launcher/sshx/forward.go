package sshx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
)

// Forward is a parsed OpenSSH-style forwarding spec.
type Forward struct {
	// Bind is where to listen, host:port ("127.0.0.1:8080" by default; "0.0.0.0:8080" for "*").
	Bind string
	// Connect is where the other side connects to, host:port ("localhost:80").
	Connect string
}

// ParseForward parses an OpenSSH -L/-R spec: "[bind_address:]port:host:hostport", IPv6
// addresses in brackets ("[::1]:8080:[::1]:80"). The bind address defaults to 127.0.0.1
// and "*" means all IPv4 interfaces.
func ParseForward(spec string) (Forward, error) {
	parts, err := splitForward(spec)
	if err != nil {
		return Forward{}, err
	}
	var bindHost, bindPort, host, port string
	switch len(parts) {
	case 3:
		bindHost, bindPort, host, port = "127.0.0.1", parts[0], parts[1], parts[2]
	case 4:
		bindHost, bindPort, host, port = parts[0], parts[1], parts[2], parts[3]
		switch bindHost {
		case "*":
			bindHost = "0.0.0.0"
		case "":
			bindHost = "127.0.0.1"
		}
	default:
		return Forward{}, fmt.Errorf("bad forward %q: expected [bind_address:]port:host:hostport, e.g. 8080:localhost:80", spec)
	}
	if err := checkPort(bindPort, true); err != nil {
		return Forward{}, fmt.Errorf("bad forward %q: listening port: %w", spec, err)
	}
	if err := checkPort(port, false); err != nil {
		return Forward{}, fmt.Errorf("bad forward %q: destination port: %w", spec, err)
	}
	if host == "" {
		return Forward{}, fmt.Errorf("bad forward %q: missing destination host", spec)
	}
	return Forward{Bind: net.JoinHostPort(bindHost, bindPort), Connect: net.JoinHostPort(host, port)}, nil
}

// splitForward splits on ':' outside of [brackets], dropping the brackets.
func splitForward(spec string) ([]string, error) {
	var parts []string
	var cur strings.Builder
	inBracket := false
	for _, r := range spec {
		switch {
		case r == '[' && !inBracket && cur.Len() == 0:
			inBracket = true
		case r == ']' && inBracket:
			inBracket = false
		case r == ':' && !inBracket:
			parts = append(parts, cur.String())
			cur.Reset()
		case r <= ' ' || r == '[' || r == ']':
			return nil, fmt.Errorf("bad forward %q: unexpected %q", spec, r)
		default:
			cur.WriteRune(r)
		}
	}
	if inBracket {
		return nil, fmt.Errorf("bad forward %q: unclosed '['", spec)
	}
	return append(parts, cur.String()), nil
}

func checkPort(p string, zeroOK bool) error {
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 || (n == 0 && !zeroOK) {
		return fmt.Errorf("%q is not a port number", p)
	}
	return nil
}

// defaultBind turns "8080" or ":8080" into "127.0.0.1:8080".
func defaultBind(bind string) (string, error) {
	if !strings.Contains(bind, ":") {
		bind = ":" + bind
	}
	host, port, err := net.SplitHostPort(bind)
	if err != nil {
		return "", fmt.Errorf("bad listening address %q: %w", bind, err)
	}
	if err := checkPort(port, true); err != nil {
		return "", fmt.Errorf("bad listening address %q: %w", bind, err)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// LocalForward listens on bind on this host (default address 127.0.0.1) and carries each
// connection to remote, dialed from the server, like `ssh -L bind:remote`. Forwarding stops
// when ctx ends or the listener is closed; connections being carried are closed when ctx ends.
func (c *Client) LocalForward(ctx context.Context, bind, remote string) (net.Listener, error) {
	bind, err := defaultBind(bind)
	if err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("forward %s to %s on %s: %w", bind, remote, c.name, err)
	}
	go c.serveForward(ctx, l, func(ctx context.Context) (net.Conn, error) {
		conn, err := c.DialContext(ctx, "tcp", remote)
		if err != nil {
			return nil, fmt.Errorf("forward %s: %s could not connect to %s: %w", bind, c.name, remote, err)
		}
		return conn, nil
	})
	return l, nil
}

// RemoteForward asks the server to listen on remoteBind (default address 127.0.0.1 on the
// server) and carries each connection to local, dialed from this host, like
// `ssh -R remoteBind:local`. The returned listener's Addr tells the port actually bound
// (useful with port 0). Forwarding stops when ctx ends or the listener is closed.
func (c *Client) RemoteForward(ctx context.Context, remoteBind, local string) (net.Listener, error) {
	remoteBind, err := defaultBind(remoteBind)
	if err != nil {
		return nil, err
	}
	l, err := c.Listen("tcp", remoteBind)
	if err != nil {
		return nil, fmt.Errorf("ask %s to listen on %s (is TCP forwarding allowed by its sshd?): %w", c.name, remoteBind, err)
	}
	go c.serveForward(ctx, l, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", local)
		if err != nil {
			return nil, fmt.Errorf("forward %s on %s: could not connect to %s: %w", remoteBind, c.name, local, err)
		}
		return conn, nil
	})
	return l, nil
}

func (c *Client) serveForward(ctx context.Context, l net.Listener, dial func(context.Context) (net.Conn, error)) {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	for {
		in, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			out, err := dial(ctx)
			if err != nil {
				in.Close()
				if c.OnForwardError != nil {
					c.OnForwardError(err)
				}
				return
			}
			pipe(ctx, in, out)
		}()
	}
}

type closeWriter interface{ CloseWrite() error }

// pipe copies both ways, propagating half-closes, until both directions end or ctx ends.
func pipe(ctx context.Context, a, b net.Conn) {
	stop := context.AfterFunc(ctx, func() { a.Close(); b.Close() })
	defer stop()
	var wg sync.WaitGroup
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		_, err := io.Copy(dst, src)
		if cw, ok := dst.(closeWriter); ok && (err == nil || errors.Is(err, io.EOF)) {
			cw.CloseWrite()
		} else {
			dst.Close()
			src.Close()
		}
	}
	wg.Add(2)
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}
