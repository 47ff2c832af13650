package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/devvm/devvm/launcher/backend"
	"golang.org/x/term"
)

// followFile writes the last opts.Lines lines of path (all when 0) and,
// with opts.Follow, keeps writing what is appended (starting over when
// the file is truncated by a new boot) until ctx ends or alive reports
// the VM gone for good.
func followFile(ctx context.Context, path string, opts backend.LogOptions, w io.Writer, alive func() bool) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		if !opts.Follow {
			return fmt.Errorf("no console log yet (%s): the VM has not been started with `devvm up`", path)
		}
	} else if err != nil {
		return err
	}
	var off int64
	if f != nil {
		data, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			return err
		}
		off = int64(len(data))
		if opts.Lines > 0 {
			data = lastLines(data, opts.Lines)
		}
		w.Write(data)
	}
	if !opts.Follow {
		return nil
	}
	tk := time.NewTicker(200 * time.Millisecond)
	defer tk.Stop()
	idle := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tk.C:
		}
		st, err := os.Stat(path)
		if err != nil {
			continue
		}
		if st.Size() < off {
			off = 0 // new boot: the log starts over
		}
		if st.Size() == off {
			idle++
			if idle%25 == 0 && !alive() {
				return nil
			}
			continue
		}
		idle = 0
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		f.Seek(off, io.SeekStart)
		n, _ := io.Copy(w, f)
		f.Close()
		off += n
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

// DetachKey ends `devvm console` (Ctrl-], as in telnet).
const DetachKey = 0x1d

// Console attaches this terminal to the VM's serial console socket in raw
// mode until the detach key (Ctrl-]) or the VM closing the console.
func (g *Guix) Console(ctx context.Context, name string, in *os.File, out io.Writer) error {
	if err := g.checkNames([]string{name}); err != nil {
		return err
	}
	o, err := g.observe(ctx)
	if err != nil {
		return err
	}
	if o.state == backend.Stopped {
		return fmt.Errorf("VM %q is not running: start it with `devvm up`", g.VF.Name)
	}
	if o.rt.Console == "" {
		return fmt.Errorf("VM %q runs in the foreground: its console is the terminal that ran `devvm up --foreground`", g.VF.Name)
	}
	conn, err := net.Dial("unix", o.rt.Console)
	if err != nil {
		return fmt.Errorf("console socket %s: %v (another `devvm console` may be attached: QEMU takes one at a time)", o.rt.Console, err)
	}
	defer conn.Close()
	fmt.Fprintf(g.UI.Err, "devvm: attached to the serial console of %q; Ctrl-] detaches\r\n", g.VF.Name)
	if term.IsTerminal(int(in.Fd())) {
		old, err := term.MakeRaw(int(in.Fd()))
		if err != nil {
			return err
		}
		defer term.Restore(int(in.Fd()), old)
	}
	fromVM := make(chan error, 1)
	go func() {
		_, err := io.Copy(out, conn)
		fromVM <- err
	}()
	keys := make(chan []byte)
	go func() {
		buf := make([]byte, 256)
		for {
			n, err := in.Read(buf)
			if n > 0 {
				keys <- append([]byte(nil), buf[:n]...)
			}
			if err != nil {
				close(keys)
				return
			}
		}
	}()
	for {
		select {
		case <-fromVM:
			fmt.Fprintf(g.UI.Err, "\r\ndevvm: the console closed (VM stopped?)\r\n")
			return nil
		case b, ok := <-keys:
			if !ok {
				return nil
			}
			if i := bytes.IndexByte(b, DetachKey); i >= 0 {
				conn.Write(b[:i])
				fmt.Fprintf(g.UI.Err, "\r\ndevvm: detached\r\n")
				return nil
			}
			if _, err := conn.Write(b); err != nil {
				return err
			}
		case <-ctx.Done():
			return nil
		}
	}
}
