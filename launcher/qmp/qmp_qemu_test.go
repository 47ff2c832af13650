package qmp

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestRealQEMU talks to a real QEMU without a guest (-machine none).
func TestRealQEMU(t *testing.T) {
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("qemu-system-x86_64 not found and CI=true: %v", err)
		}
		t.Skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
	}
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	cmd := exec.Command(bin, "-machine", "none", "-display", "none", "-nodefaults",
		"-qmp", "unix:"+sock+",server=on,wait=off")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var c *Client
	for c == nil {
		c, err = Dial(ctx, sock)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("QEMU's QMP socket never answered: %v", err)
			}
			select {
			case <-exited:
				t.Fatalf("QEMU exited before its QMP socket answered: %v", waitErr)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	defer c.Close()
	t.Logf("QEMU %s (%s), capabilities %q", c.Version, c.Version.Package, c.Capabilities)
	if c.Version.Major == 0 {
		t.Errorf("no QEMU version in greeting: %+v", c.Version)
	}

	st, err := c.QueryStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("query-status: %+v", st)
	if st.Status == "" {
		t.Errorf("empty status: %+v", st)
	}

	_, err = c.Execute(ctx, "no-such-command", nil)
	var qe *Error
	if !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Errorf("unknown command: %v, want CommandNotFound", err)
	}

	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("QEMU exited with %v after quit, want status 0", waitErr)
		}
	case <-ctx.Done():
		t.Fatal("QEMU still running 60s after quit")
	}
	if _, err := c.WaitEvent(ctx, "SHUTDOWN"); err != nil {
		t.Errorf("no SHUTDOWN event after quit: %v", err)
	}
}
