package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/backends"
	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/machine"
	"github.com/devvm/devvm/launcher/vmfile"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// checkoutDir returns --dir, or the nearest directory upwards from the
// working directory that has a Vmfile (like Vagrant), or the working
// directory.
func checkoutDir(c *cli.Context) (string, error) {
	if d := c.String("dir"); d != "" {
		return filepath.Abs(d)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, vmfile.FileName)); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return wd, nil
		}
	}
}

func newUI() *backend.UI {
	ui := &backend.UI{Err: os.Stderr, Terminal: term.IsTerminal(int(os.Stderr.Fd())) && os.Getenv("TERM") != "dumb"}
	if term.IsTerminal(int(os.Stdin.Fd())) {
		ui.In = os.Stdin
	}
	return ui
}

// open loads the checkout's Vmfile and its backend.
func open(c *cli.Context) (backend.Backend, *vmfile.Vmfile, *backend.UI, error) {
	dir, err := checkoutDir(c)
	if err != nil {
		return nil, nil, nil, err
	}
	ui := newUI()
	b, vf, err := backends.Open(dir, hostenv.FromOS(), ui)
	if err != nil {
		return nil, nil, nil, err
	}
	closers = append(closers, b)
	return b, vf, ui, nil
}

// streams returns the IOStreams the app runs with (newApp keeps them in
// the app's metadata).
func streams(c *cli.Context) *hostenv.IOStreams {
	return c.App.Metadata[iosKey].(*hostenv.IOStreams)
}

const iosKey = "iostreams"

// openBackend is open with the progress UI wired to the command's streams:
// control sequences only on a terminal whose TERM is not dumb, questions
// only when stdin and stderr are terminals, --debug lines when asked.
func openBackend(c *cli.Context) (backend.Backend, *vmfile.Vmfile, *backend.UI, error) {
	b, vf, ui, err := open(c)
	if ui != nil {
		wireUI(ui, streams(c))
	}
	return b, vf, ui, err
}

func wireUI(ui *backend.UI, ios *hostenv.IOStreams) {
	ui.Err = ios.Err
	ui.Terminal = ios.ProgressOnStderr()
	ui.In = nil
	if ios.CanPrompt() {
		ui.In = ios.TerminalIn()
	}
	ui.Debug = ios.Debug()
}

// closers are backends holding connections (a remote hypervisor's SSH
// connection); run closes them when the command ends.
var closers []io.Closer

func closeAll() {
	for _, c := range closers {
		c.Close()
	}
	closers = nil
}

// machineArgs returns the machine names given as arguments, or all; a
// name the Vmfile does not define is a usage error.
func machineArgs(c *cli.Context, b backend.Backend) ([]string, error) {
	if c.NArg() == 0 {
		return b.Machines(), nil
	}
	names := c.Args().Slice()
	for _, n := range names {
		if err := knownMachine(n, b.Machines()); err != nil {
			return nil, err
		}
	}
	return names, nil
}

// oneMachine returns the single machine the argument names, or the only
// one of the Vmfile.
func oneMachine(c *cli.Context, b backend.Backend) (string, error) {
	ms := b.Machines()
	switch {
	case c.NArg() > 1:
		return "", usageError("devvm %s takes one machine, got %d: %s", c.Command.Name, c.NArg(), strings.Join(c.Args().Slice(), " "))
	case c.NArg() == 1:
		return c.Args().First(), knownMachine(c.Args().First(), ms)
	case len(ms) != 1:
		return "", usageError("this Vmfile defines several machines (%s): name one, e.g. devvm %s %s", strings.Join(ms, ", "), c.Command.Name, ms[0])
	}
	return ms[0], nil
}

func knownMachine(name string, machines []string) error {
	if !slices.Contains(machines, name) {
		return usageError("no machine %q in this Vmfile (it defines %s)", name, strings.Join(machines, ", "))
	}
	return nil
}

// printJSON writes v indented, with &, < and > as they are (not \u0026).
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

var timeoutFlag = func(def time.Duration, usage string) *cli.DurationFlag {
	return &cli.DurationFlag{Name: "timeout", Value: def, Usage: usage}
}

// usageError marks bad command-line use (exit status 2).
func usageError(format string, a ...any) error {
	return cli.Exit(fmt.Sprintf(format, a...), 2)
}

// stopOrphans is halt's and destroy's answer to a Vmfile that does not
// load: the VMs devvm recorded for the checkout are still stopped (and,
// with remove, destroyed) by their records, and loadErr is reported after.
func stopOrphans(c *cli.Context, loadErr error, remove bool) error {
	var ve *vmfile.Error
	if !errors.As(loadErr, &ve) {
		return loadErr
	}
	dir, err := checkoutDir(c)
	if err != nil {
		return loadErr
	}
	n, err := machine.StopOrphans(c.Context, hostenv.FromOS(), newUI(), dir, c.Duration("timeout"), remove)
	if err != nil || n == 0 {
		return errors.Join(loadErr, err)
	}
	return fmt.Errorf("%w\n(the VMs devvm recorded for this checkout were stopped anyway; fix the Vmfile before `devvm up`)", loadErr)
}
