package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// StartDetached runs QEMU with -daemonize in a new session with stdin on
// /dev/null: QEMU reports start-up errors before it detaches, then the VM
// outlives devvm and the terminal. It returns the daemon's pid from the
// pidfile.
func StartDetached(ctx context.Context, command func(context.Context, string, ...string) *exec.Cmd, argv []string, pidfile string) (int, error) {
	os.Remove(pidfile)
	cmd := command(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return 0, err
	}
	defer devnull.Close()
	cmd.Stdin = devnull
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if msg == "" {
			msg = err.Error()
		}
		return 0, &StartError{Output: msg, Err: err}
	}
	// The parent exits after the daemon wrote its pidfile.
	var pid int
	for i := 0; i < 50; i++ {
		b, err := os.ReadFile(pidfile)
		if err == nil {
			if pid, err = strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				return pid, nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, fmt.Errorf("QEMU started but wrote no pid to %s", pidfile)
}

// StartError is QEMU refusing to start; Output is what it printed.
type StartError struct {
	Output string
	Err    error
}

func (e *StartError) Error() string { return "QEMU did not start: " + e.Output }
func (e *StartError) Unwrap() error { return e.Err }

// HostfwdBusy tells whether QEMU failed because a forwarded host port was
// taken between devvm's check and QEMU's bind.
func HostfwdBusy(err error) bool {
	var se *StartError
	return errors.As(err, &se) && strings.Contains(se.Output, "host forwarding rule")
}
