package backend

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/devvm/devvm/launcher/proc"
	"github.com/devvm/devvm/launcher/sshx"
)

// WaitSSH waits like sshx.WaitReady (pinning this boot's host key with pin:
// the VM is known to be ours, its process is id) until the VM accepts SSH,
// and ends at once when that process stops being alive: died then says why
// (and err is set).
func WaitSSH(ctx context.Context, t sshx.Target, id proc.Identity, poll time.Duration, pin bool) (c *sshx.Client, died string, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dead := make(chan string, 1)
	go func() {
		tk := time.NewTicker(poll)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
				if v := proc.Check(id); v.State != proc.Alive {
					dead <- v.Reason
					cancel()
					return
				}
			}
		}
	}()
	c, err = sshx.WaitReady(ctx, t, poll, pin)
	if err != nil {
		select {
		case died = <-dead:
		default:
		}
	}
	return c, died, err
}

// ConsoleTail returns the last n lines of a console log, framed for an
// error message.
func ConsoleTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "(no console output: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(strings.ReplaceAll(string(data), "\r", ""), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return fmt.Sprintf("last %d console lines (%s):\n  %s", len(lines), path, strings.Join(lines, "\n  "))
}

// HumanBytes renders a byte count ("1.5 GiB"); negative means unknown.
func HumanBytes(n int64) string {
	if n < 0 {
		return "an unreported amount"
	}
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}
