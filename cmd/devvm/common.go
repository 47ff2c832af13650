package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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

// closers are backends holding connections (a remote hypervisor's SSH
// connection); run closes them when the command ends.
var closers []io.Closer

func closeAll() {
	for _, c := range closers {
		c.Close()
	}
	closers = nil
}

// machineArgs returns the machine names given as arguments, or all.
func machineArgs(c *cli.Context, b backend.Backend) []string {
	if c.NArg() > 0 {
		return c.Args().Slice()
	}
	return b.Machines()
}

// oneMachine returns the single machine an argument names (or the only one).
func oneMachine(c *cli.Context, b backend.Backend, argc int) (string, error) {
	ms := b.Machines()
	if argc > 0 {
		return c.Args().First(), nil
	}
	if len(ms) != 1 {
		return "", fmt.Errorf("this Vmfile defines several machines (%v): name one", ms)
	}
	return ms[0], nil
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
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
