package share

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/devvm/devvm/launcher/sshx"
	"golang.org/x/sys/unix"
)

const (
	// DefaultKeepAlive is how often the daemon checks that the SSH
	// connection answers; after DefaultKeepAliveMax silent intervals it
	// closes the connection, which ends the mount in the guest.
	DefaultKeepAlive    = 15 * time.Second
	DefaultKeepAliveMax = 3
	// mountTimeout bounds the mount script in the guest (TCG guests under
	// load are slow, hence generous).
	mountTimeout = 2 * time.Minute
	// unmountTimeout bounds the unmount when the daemon is told to stop.
	unmountTimeout = 10 * time.Second
)

// DaemonConfig configures RunDaemon: one host directory mounted at one
// guest path for the life of one SSH connection.
type DaemonConfig struct {
	// Target is the guest's sshd, verified against its pinned host key.
	Target sshx.Target
	// Root is the host directory to serve.
	Root string
	// Guest is the mount point in the guest.
	Guest string
	// ReadOnly serves the directory read-only (mutations fail with EROFS).
	ReadOnly bool
	// Msize is the 9P message size (0: DefaultMsize).
	Msize int
	// KeepAlive and KeepAliveMax configure SSH keepalives (0: the defaults).
	KeepAlive    time.Duration
	KeepAliveMax int
	// Pidfile, when set, is write-locked (POSIX lock, like QEMU's -pidfile)
	// and holds the daemon's pid for as long as it serves: proc.Capture and
	// proc.Check use the lock as proof of identity, and a second daemon for
	// the same pidfile is refused.
	Pidfile string
	// Ready is called once the guest has mounted the share.
	Ready func(port int)
	// Logf reports progress (nil: silent).
	Logf func(format string, a ...any)
}

// ErrAlreadyServed is returned (wrapped) when another process holds the
// daemon's pidfile.
var ErrAlreadyServed = errors.New("the share is already served by another process")

// RunDaemon dials the guest, serves Root over an SSH remote forward, mounts
// it at Guest with `sudo -n bash -s` (the script, with its nonce, on
// standard input) and serves until the guest unmounts it, the SSH connection
// drops (or stops answering keepalives) or ctx ends. When ctx ends it
// unmounts the share in the guest first (lazily, bounded), then closes the
// connection, so guest processes still using the share get errors instead
// of hanging. It returns nil when serving ended normally (unmount, ctx, SSH
// gone after a successful mount) and an error when the share could not be
// mounted.
func RunDaemon(ctx context.Context, cfg DaemonConfig) error {
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if cfg.Guest == "" || !strings.HasPrefix(cfg.Guest, "/") {
		return fmt.Errorf("share: the guest mount point %q is not an absolute path", cfg.Guest)
	}
	if cfg.Pidfile != "" {
		f, err := lockPidfile(cfg.Pidfile)
		if err != nil {
			return err
		}
		defer func() {
			os.Remove(cfg.Pidfile)
			f.Close()
		}()
	}
	dctx, cancel := context.WithTimeout(ctx, mountTimeout)
	defer cancel()
	// Retry transient failures (a guest whose sshd restarts right after it
	// first answered); the host key is verified strictly, a mismatch ends it.
	c, err := sshx.WaitReady(dctx, cfg.Target, 250*time.Millisecond, false)
	if err != nil {
		return fmt.Errorf("share: cannot connect to the guest to mount %s: %w", cfg.Guest, err)
	}
	defer c.Close()
	ka, kaMax := cfg.KeepAlive, cfg.KeepAliveMax
	if ka <= 0 {
		ka = DefaultKeepAlive
	}
	if kaMax <= 0 {
		kaMax = DefaultKeepAliveMax
	}
	c.KeepAlive(ka, kaMax)
	sshGone := make(chan struct{})
	go func() {
		c.Wait()
		close(sshGone)
	}()

	// Not ctx: on ctx's end the guest unmounts first, while the server still answers.
	srv, err := ServeOverSSH(context.Background(), c.Client, cfg.Root, Options{ReadOnly: cfg.ReadOnly})
	if err != nil {
		return err
	}
	defer srv.Close()
	logf("serving %s on the guest's 127.0.0.1:%d (read-only: %t)", cfg.Root, srv.Port(), cfg.ReadOnly)

	script := unmountStaleScript(cfg.Guest) + srv.MountCommand(cfg.Guest, cfg.Msize)
	var out strings.Builder
	code, err := c.Run(dctx, "sudo -n bash -s", strings.NewReader(script), &out, &out, false)
	if err != nil {
		return fmt.Errorf("share: mounting %s in the guest failed: %w", cfg.Guest, err)
	}
	if code != 0 {
		return fmt.Errorf("share: mounting %s in the guest failed (exit status %d): %s\n"+
			"hint: the guest needs bash, sudo without a password and 9p over a file descriptor (Linux module 9pnet_fd)",
			cfg.Guest, code, strings.TrimSpace(out.String()))
	}
	logf("mounted on %s in the guest", cfg.Guest)
	if cfg.Ready != nil {
		cfg.Ready(srv.Port())
	}

	served := make(chan error, 1)
	go func() { served <- srv.Wait() }()
	select {
	case err := <-served:
		if err != nil {
			return err
		}
		logf("the guest's connection ended (unmounted, or the guest went down); exiting")
		return nil
	case <-sshGone:
		logf("the SSH connection to the guest ended; exiting")
		return nil
	case <-ctx.Done():
	}
	logf("stopping (%v): unmounting %s in the guest", context.Cause(ctx), cfg.Guest)
	uctx, ucancel := context.WithTimeout(context.Background(), unmountTimeout)
	defer ucancel()
	out.Reset()
	code, err = c.Run(uctx, "sudo -n umount -l -- "+shellQuote(cfg.Guest), nil, &out, &out, false)
	switch {
	case err != nil:
		logf("unmount failed: %v (closing the connection instead)", err)
	case code != 0:
		logf("unmount failed (exit status %d): %s (closing the connection instead)", code, strings.TrimSpace(out.String()))
	}
	return nil
}

// unmountStaleScript returns bash lines that lazily unmount a mount of
// ours left at guest by a server that died (its connection is dead, and a
// new mount on top of it would hide nothing but confuse `mount`).
func unmountStaleScript(guest string) string {
	return fmt.Sprintf(`p=%s
if awk -v p="$p" '$1 == "devvm" && $2 == p && $3 == "9p" {found = 1} END {exit !found}' /proc/mounts; then
	umount -l -- "$p"
fi
`, shellQuote(guest))
}

// lockPidfile takes a POSIX write lock on path without waiting and writes
// the pid into it. The lock lasts until the returned file is closed or the
// process exits.
func lockPidfile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("share: cannot open the pidfile %s: %w", path, err)
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err := unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk); err != nil {
		f.Close()
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			holder := "another process"
			if b, rerr := os.ReadFile(path); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
					holder = fmt.Sprintf("pid %d", pid)
				}
			}
			return nil, fmt.Errorf("share: %w (%s holds %s); stop it first", ErrAlreadyServed, holder, path)
		}
		return nil, fmt.Errorf("share: cannot lock the pidfile %s: %w", path, err)
	}
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("share: cannot write the pidfile %s: %w", path, err)
	}
	return f, nil
}
