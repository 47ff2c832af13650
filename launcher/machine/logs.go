package machine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/state"
)

// logPoll is how often a followed log is checked for more output.
const logPoll = 200 * time.Millisecond

// Logs implements backend.Backend: the driver's stream (LogStreamer), or
// the machine's console log of the current boot, followed across reboots.
func (mg *Manager) Logs(ctx context.Context, name string, opts backend.LogOptions, w io.Writer) error {
	m, err := mg.one(name)
	if err != nil {
		return err
	}
	if err := mg.migrate(m); err != nil {
		return err
	}
	if ls, ok := mg.d.(LogStreamer); ok {
		return ls.StreamLogs(ctx, m, opts, w)
	}
	path := m.VM.ConsoleLog()
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		if !opts.Follow {
			return fmt.Errorf("%w (%s): start VM %q with `devvm up %s`", backend.ErrNoLog, path, m.Name, m.Name)
		}
		if opts.WaitingForBoot != nil {
			opts.WaitingForBoot()
		} else {
			mg.ui.Printf("VM %q has no console log yet: waiting for its first boot (`devvm up %s`; Ctrl-C stops waiting)", m.Name, m.Name)
		}
	}
	return followFile(ctx, path, opts, w, func() bool {
		o, err := mg.observe(ctx, m)
		return err == nil && o.state != backend.Stopped
	})
}

// followFile writes the last opts.Lines lines of path (all when 0) and,
// with opts.Follow, what is appended, starting over when a new boot
// truncates or replaces the file, until ctx ends or, once the file exists,
// alive reports the machine gone. It never follows a link.
func followFile(ctx context.Context, path string, opts backend.LogOptions, w io.Writer, alive func() bool) error {
	var off int64
	var ino uint64
	seen := false
	read := func(first bool) error {
		f, err := state.OpenFile(path, os.O_RDONLY, 0)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		if id := inode(st); !seen || id != ino || st.Size() < off {
			seen, ino, off = true, id, 0 // a new boot: the log starts over
		}
		if first && opts.Lines > 0 {
			data, err := io.ReadAll(f)
			if err != nil {
				return err
			}
			off = int64(len(data))
			_, err = w.Write(lastLines(data, opts.Lines))
			return err
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return err
		}
		n, err := io.Copy(w, f)
		off += n
		return err
	}
	if err := read(true); err != nil {
		return err
	}
	if !opts.Follow {
		return nil
	}
	tk := time.NewTicker(logPoll)
	defer tk.Stop()
	idle := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tk.C:
		}
		before := off
		if err := read(false); err != nil {
			return err
		}
		if off != before {
			idle = 0
			continue
		}
		if idle++; seen && idle%25 == 0 && !alive() {
			return nil
		}
	}
}

func lastLines(data []byte, n int) []byte {
	trimmed := bytes.TrimRight(data, "\n")
	i := len(trimmed)
	for ; n > 0 && i > 0; n-- {
		i = bytes.LastIndexByte(trimmed[:i], '\n')
		if i < 0 {
			return data
		}
	}
	return data[i+1:]
}

// Console implements backend.Backend.
func (mg *Manager) Console(ctx context.Context, name string, in *os.File, out io.Writer) error {
	c, ok := mg.d.(Consoler)
	if !ok {
		return fmt.Errorf("%s VMs have no attachable serial console: `devvm logs %s -f` follows their console output, `devvm run %s` runs one in the foreground", mg.d.Kind(), name, name)
	}
	m, err := mg.one(name)
	if err != nil {
		return err
	}
	o, err := mg.observe(ctx, m)
	if err != nil {
		return err
	}
	if o.state == backend.Stopped {
		return mg.errNotRunning(m, o)
	}
	if !o.rec.Console {
		return fmt.Errorf("VM %q runs in the foreground: its console is the terminal that ran `devvm up --foreground`", m.Name)
	}
	return c.Console(ctx, m, o.rec, in, out, mg.ui.Err)
}
