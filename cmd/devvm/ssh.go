package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/devvm/devvm/launcher/sshx"
	"github.com/devvm/devvm/launcher/vmfile"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

func sshCommand() *cli.Command {
	return &cli.Command{
		Name:      "ssh",
		Usage:     "log in to the VM, or run a command there: devvm ssh [MACHINE] [-- COMMAND ARGS…]",
		ArgsUsage: "[MACHINE] [-- COMMAND ARGS…]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "t", Usage: "force a terminal for a command (like ssh -t)"},
			&cli.BoolFlag{Name: "A", Usage: "forward the SSH agent (SSH_AUTH_SOCK)"},
			&cli.StringSliceFlag{Name: "L", Usage: "local forward [bind:]port:host:hostport (binds 127.0.0.1 by default)"},
			&cli.StringSliceFlag{Name: "R", Usage: "remote forward [bind:]port:host:hostport"},
		},
		Action: func(c *cli.Context) error {
			b, vf, _, err := open(c)
			if err != nil {
				return err
			}
			name, argv, err := splitSSHArgs(c.Args().Slice(), b.Machines(), slices.Contains(os.Args, "--"))
			if err != nil {
				return usageError("%v", err)
			}
			t, err := b.SSHTarget(c.Context, name)
			if err != nil {
				return err
			}
			if c.Bool("A") {
				t.AgentForward = true
			}
			client, err := sshx.Dial(c.Context, *t)
			if err != nil {
				return err
			}
			defer client.Close()
			for _, spec := range c.StringSlice("L") {
				f, err := sshx.ParseForward(spec)
				if err != nil {
					return usageError("-L: %v", err)
				}
				l, err := client.LocalForward(c.Context, f.Bind, f.Connect)
				if err != nil {
					return err
				}
				defer l.Close()
			}
			for _, spec := range c.StringSlice("R") {
				f, err := sshx.ParseForward(spec)
				if err != nil {
					return usageError("-R: %v", err)
				}
				l, err := client.RemoteForward(c.Context, f.Bind, f.Connect)
				if err != nil {
					return err
				}
				defer l.Close()
			}
			var code int
			stdinTTY := term.IsTerminal(int(os.Stdin.Fd()))
			switch {
			case len(argv) == 0 || c.Bool("t"):
				code, err = client.Interactive(c.Context, sshx.InteractiveOptions{
					Dir: guestDir(vf), Command: sshx.ShellQuote(argv), Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
				})
			default:
				code, err = client.Run(c.Context, sshx.ShellQuote(argv), stdinOrNil(stdinTTY), os.Stdout, os.Stderr, false)
			}
			if err != nil {
				return err
			}
			if code != 0 {
				return cli.Exit("", code)
			}
			return nil
		},
	}
}

// stdinOrNil streams stdin to a command unless it is a terminal (then the
// command gets none, as `ssh host cmd` without -t would block on it). It
// returns an untyped nil reader then: a nil *os.File in an io.Reader is not
// nil, and the session would read from it.
func stdinOrNil(tty bool) io.Reader {
	if tty {
		return nil
	}
	return os.Stdin
}

// splitSSHArgs separates the machine name from the command. dashdash says
// whether the command line had "--" (urfave/cli drops a leading one).
func splitSSHArgs(args, machines []string, dashdash bool) (string, []string, error) {
	if i := slices.Index(args, "--"); i >= 0 {
		if i > 1 {
			return "", nil, fmt.Errorf("give at most one machine before --")
		}
		name := ""
		if i == 1 {
			name = args[0]
		}
		return pickMachine(name, machines, args[i+1:])
	}
	if len(args) > 0 && slices.Contains(machines, args[0]) && !(dashdash && len(machines) == 1) {
		return pickMachine(args[0], machines, args[1:])
	}
	if len(args) > 0 && !dashdash {
		return "", nil, fmt.Errorf("%q is not a machine of this Vmfile (%s); put a command after --: devvm ssh -- %s",
			args[0], strings.Join(machines, ", "), strings.Join(args, " "))
	}
	return pickMachine("", machines, args)
}

func pickMachine(name string, machines, argv []string) (string, []string, error) {
	if name == "" {
		if len(machines) != 1 {
			return "", nil, fmt.Errorf("this Vmfile defines several machines (%s): name one, e.g. devvm ssh %s -- CMD", strings.Join(machines, ", "), machines[0])
		}
		name = machines[0]
	}
	if !slices.Contains(machines, name) {
		return "", nil, fmt.Errorf("no machine %q in this Vmfile (have %s)", name, strings.Join(machines, ", "))
	}
	return name, argv, nil
}

// guestDir is where an interactive shell starts: the first share's mount
// point in the guest, like Lima starts in the current directory.
func guestDir(vf *vmfile.Vmfile) string {
	if len(vf.Shares) > 0 {
		return vf.Shares[0].Guest
	}
	return ""
}
