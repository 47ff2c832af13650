package guixvm

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/devvm/devvm/launcher/machine"
	"golang.org/x/term"
)

// DetachKey ends `devvm console` (Ctrl-], as in telnet).
const DetachKey = 0x1d

// Console implements machine.Consoler: this terminal on the VM's serial
// console socket (its own path) in raw mode until the detach key (Ctrl-])
// or the VM closing the console.
func (d *Driver) Console(ctx context.Context, m *machine.Machine, rec *machine.Record, in *os.File, out io.Writer, msg io.Writer) error {
	sock := m.VM.ConsoleSocket()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return fmt.Errorf("console socket %s: %v (another `devvm console` may be attached: QEMU takes one at a time)", sock, err)
	}
	defer conn.Close()
	fmt.Fprintf(msg, "devvm: attached to the serial console of %q; Ctrl-] detaches\r\n", m.Name)
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
			fmt.Fprintf(msg, "\r\ndevvm: the console closed (VM stopped?)\r\n")
			return nil
		case b, ok := <-keys:
			if !ok {
				return nil
			}
			if i := bytes.IndexByte(b, DetachKey); i >= 0 {
				conn.Write(b[:i])
				fmt.Fprintf(msg, "\r\ndevvm: detached\r\n")
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
