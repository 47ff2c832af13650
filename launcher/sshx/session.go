package sshx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/term"
)

// ExitStatusUnknown is the status reported when the remote command's status is unknown
// (connection lost, no exit-status sent, unknown signal), like OpenSSH's 255.
const ExitStatusUnknown = 255

// linuxSignals maps SSH signal names (RFC 4254 names without "SIG", as sent by OpenSSH) to
// Linux signal numbers: the guests are Linux, whatever the host is.
var linuxSignals = map[string]int{
	"HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "BUS": 7, "FPE": 8,
	"KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15,
	"STKFLT": 16, "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22,
	"URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29,
	"PWR": 30, "SYS": 31,
}

// SignalNumber returns the Linux number of an SSH signal name ("INT", also "SIGINT").
func SignalNumber(name string) (int, bool) {
	n, ok := linuxSignals[strings.TrimPrefix(strings.ToUpper(name), "SIG")]
	return n, ok
}

// exitStatus turns the result of Session.Wait into a shell-style status: the remote exit
// status, 128+N for a command killed by signal N, and ExitStatusUnknown with an error when
// there is no usable status.
func (c *Client) exitStatus(err error) (int, error) {
	var ee *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		if sig := ee.Signal(); sig != "" {
			if n, ok := SignalNumber(sig); ok {
				return 128 + n, nil
			}
			return ExitStatusUnknown, fmt.Errorf("remote command on %s was killed by unknown signal %q", c.name, sig)
		}
		return ee.ExitStatus(), nil
	case errors.As(err, &missing):
		return ExitStatusUnknown, fmt.Errorf("remote command on %s ended without reporting an exit status (sshd did not send one, or the connection dropped); treating it as %d like OpenSSH", c.name, ExitStatusUnknown)
	default:
		return ExitStatusUnknown, fmt.Errorf("remote command on %s: %w", c.name, err)
	}
}

func (c *Client) newSession() (*ssh.Session, error) {
	sess, err := c.NewSession()
	if err != nil {
		return nil, fmt.Errorf("open an SSH session on %s: %w", c.name, err)
	}
	if c.agentSock != "" {
		if err := agent.RequestAgentForwarding(sess); err != nil {
			sess.Close()
			return nil, fmt.Errorf("request agent forwarding on %s: %w", c.name, err)
		}
	}
	return sess, nil
}

// wait waits for the session's command, or for ctx: then the command gets SIGTERM and the
// session is closed.
func (c *Client) wait(ctx context.Context, sess *ssh.Session) (int, error) {
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err := <-done:
		return c.exitStatus(err)
	case <-ctx.Done():
		sess.Signal(ssh.SIGTERM)
		sess.Close()
		return ExitStatusUnknown, fmt.Errorf("remote command on %s abandoned: %w", c.name, ctx.Err())
	}
}

// outputs serializes writes when stdout and stderr are the same writer: the session copies
// them from two goroutines (os/exec does the same).
func outputs(stdout, stderr io.Writer) (io.Writer, io.Writer) {
	if stdout != nil && sameWriter(stdout, stderr) {
		w := &lockedWriter{w: stdout}
		return w, w
	}
	return stdout, stderr
}

func sameWriter(a, b io.Writer) (same bool) {
	defer func() {
		if recover() != nil { // uncomparable dynamic types
			same = false
		}
	}()
	return a == b
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func termName() string {
	if t := os.Getenv("TERM"); t != "" {
		return t
	}
	return "xterm-256color"
}

var ptyModes = ssh.TerminalModes{ssh.ECHO: 1, ssh.TTY_OP_ISPEED: 14400, ssh.TTY_OP_OSPEED: 14400}

// Run runs cmd, a remote shell command line (build it with ShellQuote from an argv), and
// returns its exit status: the remote status, or 128+N when it was killed by signal N.
// err is non-nil only when no status could be obtained (then status is 255, like OpenSSH).
// stdin, if not nil, is streamed to the command, whose stdin is closed at EOF. With tty a
// pseudo-terminal is requested (size from stdout when it is a terminal, else 80x24); for
// interactive use prefer Interactive. When ctx ends the command is sent SIGTERM and abandoned.
func (c *Client) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer, tty bool) (int, error) {
	sess, err := c.newSession()
	if err != nil {
		return ExitStatusUnknown, err
	}
	defer sess.Close()
	if tty {
		w, h := 80, 24
		if f, ok := stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			if fw, fh, err := term.GetSize(int(f.Fd())); err == nil {
				w, h = fw, fh
			}
		}
		if err := sess.RequestPty(termName(), h, w, ptyModes); err != nil {
			return ExitStatusUnknown, fmt.Errorf("request a terminal on %s: %w", c.name, err)
		}
	}
	sess.Stdin = stdin
	sess.Stdout, sess.Stderr = outputs(stdout, stderr)
	if err := sess.Start(cmd); err != nil {
		return ExitStatusUnknown, fmt.Errorf("start remote command on %s: %w", c.name, err)
	}
	return c.wait(ctx, sess)
}

// InteractiveOptions configures Interactive.
type InteractiveOptions struct {
	// Dir, if set, is the remote directory to start in when it exists (else the home).
	Dir string
	// Command is a remote shell command line; empty means a login shell.
	Command string
	// Stdin is the local input; when it is a terminal, a remote pty is used and Stdin is put
	// in raw mode for the duration of the session. May be nil (no input).
	Stdin *os.File
	// Stdout and Stderr receive the remote output (with a pty, everything goes to Stdout).
	Stdout, Stderr io.Writer
}

// remoteCommand builds the command line for Interactive; "" means the shell request.
func remoteCommand(dir, command string) string {
	switch {
	case dir == "":
		return command
	case command == "":
		return "cd " + ShellQuote([]string{dir}) + ` 2>/dev/null; exec "${SHELL:-/bin/sh}" -l`
	default:
		return "cd " + ShellQuote([]string{dir}) + " 2>/dev/null; " + command
	}
}

// Interactive runs a shell or command the way OpenSSH's ssh does for a user: when Stdin is a
// terminal, with a remote pty (TERM passed, falling back to xterm-256color; the local
// terminal in raw mode, restored on every exit path; window size changes forwarded);
// otherwise without a pty, like `ssh -T`. The status is as for Run.
func (c *Client) Interactive(ctx context.Context, o InteractiveOptions) (status int, err error) {
	sess, err := c.newSession()
	if err != nil {
		return ExitStatusUnknown, err
	}
	defer sess.Close()
	if o.Stdin != nil {
		sess.Stdin = o.Stdin
		if fd := int(o.Stdin.Fd()); term.IsTerminal(fd) {
			restore, err := c.startTerminal(sess, fd)
			if err != nil {
				return ExitStatusUnknown, err
			}
			defer restore()
		}
	}
	sess.Stdout, sess.Stderr = outputs(o.Stdout, o.Stderr)
	if cmd := remoteCommand(o.Dir, o.Command); cmd == "" {
		err = sess.Shell()
	} else {
		err = sess.Start(cmd)
	}
	if err != nil {
		return ExitStatusUnknown, fmt.Errorf("start remote shell on %s: %w", c.name, err)
	}
	return c.wait(ctx, sess)
}

// startTerminal requests a pty sized like the terminal fd, puts fd in raw mode and forwards
// SIGWINCH. The returned function undoes it all.
func (c *Client) startTerminal(sess *ssh.Session, fd int) (func(), error) {
	w, h, err := term.GetSize(fd) // width, height; RequestPty and WindowChange take height, width
	if err != nil {
		w, h = 80, 24
	}
	if err := sess.RequestPty(termName(), h, w, ptyModes); err != nil {
		return nil, fmt.Errorf("request a terminal on %s: %w", c.name, err)
	}
	old, err := term.MakeRaw(fd)
	if err != nil {
		return nil, fmt.Errorf("put the terminal in raw mode: %w", err)
	}
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-winch:
				if w, h, err := term.GetSize(fd); err == nil {
					sess.WindowChange(h, w)
				}
			}
		}
	}()
	return func() {
		signal.Stop(winch)
		close(stop)
		term.Restore(fd, old)
	}, nil
}

// KeepAlive sends an OpenSSH keepalive request every interval and closes the connection when
// maxMissed intervals in a row pass without an answer (like ServerAliveInterval and
// ServerAliveCountMax). It stops when the connection ends. interval <= 0 disables it;
// maxMissed <= 0 means 3.
func (c *Client) KeepAlive(interval time.Duration, maxMissed int) {
	if interval <= 0 {
		return
	}
	if maxMissed <= 0 {
		maxMissed = 3
	}
	go func() {
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		replies := make(chan error, 1)
		pending, missed := false, 0
		for {
			select {
			case <-c.done:
				return
			case err := <-replies:
				if err != nil {
					return // the connection is gone
				}
				pending, missed = false, 0
			case <-ticker.C:
				if pending {
					missed++
					if missed >= maxMissed {
						c.Close()
						return
					}
					continue
				}
				pending = true
				go func() {
					_, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
					replies <- err
				}()
			}
		}
	}()
}
