package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/sshx"
	"github.com/urfave/cli/v2"
)

// sshOptions are the inputs of `devvm ssh`.
type sshOptions struct {
	IO      *hostenv.IOStreams
	Backend backend.Backend
	// Args are the command's arguments: [MACHINE] [-- COMMAND ARGS…].
	Args []string
	// Workdir is the guest directory to start in; WorkdirSet says --workdir
	// was given (else it is the guest path of the host's directory).
	Workdir    string
	WorkdirSet bool
	TTY, Agent bool
	Local      []string // -L specs
	Remote     []string // -R specs
}

func sshCommand() *cli.Command {
	return &cli.Command{
		Name:      "ssh",
		Usage:     "log in to the VM, or run a command there, in the guest path of the current directory",
		ArgsUsage: "[MACHINE] [-- COMMAND ARGS…]",
		Description: "Everything after the first -- is the guest command, its words passed exactly (quoted for the\n" +
			"guest's shell): devvm ssh -- git log -- README.md. Pipelines and redirections need a shell:\n" +
			"devvm ssh -- sh -c 'make 2>&1 | tee log'. Commands and shells start in the guest path of the\n" +
			"host's current directory (checkout/src → /mnt/NAME/src), the checkout's share outside every\n" +
			"share, the home without shares; --workdir overrides ('' is the home).",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "t", Usage: "force a terminal for a command (like ssh -t)"},
			&cli.BoolFlag{Name: "A", Usage: "forward the SSH agent (SSH_AUTH_SOCK)"},
			&cli.StringSliceFlag{Name: "L", Usage: "local forward [bind:]port:host:hostport (binds 127.0.0.1 by default)"},
			&cli.StringSliceFlag{Name: "R", Usage: "remote forward [bind:]port:host:hostport"},
			&cli.StringFlag{Name: "workdir", Aliases: []string{"w"}, Usage: "guest directory to start in (default: the guest path of the current directory)"},
		},
		Action: func(c *cli.Context) error {
			b, vf, _, err := openBackend(c)
			if err != nil {
				return err
			}
			o := &sshOptions{
				IO: streams(c), Backend: b, Args: c.Args().Slice(),
				Workdir: c.String("workdir"), WorkdirSet: c.IsSet("workdir"),
				TTY: c.Bool("t"), Agent: c.Bool("A"), Local: c.StringSlice("L"), Remote: c.StringSlice("R"),
			}
			if !o.WorkdirSet {
				wd, err := os.Getwd()
				if err != nil {
					return err
				}
				o.Workdir = guestWorkdir(vf, wd)
			}
			return exitStatus(runSSH(c.Context, o))
		},
	}
}

// exitStatus turns a guest command's status into the command's result.
func exitStatus(code int, err error) error {
	if err != nil {
		return err
	}
	if code != 0 {
		return cli.Exit("", code)
	}
	return nil
}

// runSSH runs `devvm ssh` and returns the guest command's exit status.
func runSSH(ctx context.Context, o *sshOptions) (int, error) {
	name, argv, err := splitSSHArgs(o.Args, o.Backend.Machines())
	if err != nil {
		return 0, err
	}
	specs := func(flag string, in []string) ([]sshx.Forward, error) {
		var fs []sshx.Forward
		for _, spec := range in {
			f, err := sshx.ParseForward(spec)
			if err != nil {
				return nil, usageError("-%s: %v", flag, err)
			}
			fs = append(fs, f)
		}
		return fs, nil
	}
	local, err := specs("L", o.Local)
	if err != nil {
		return 0, err
	}
	remote, err := specs("R", o.Remote)
	if err != nil {
		return 0, err
	}
	client, err := dialMachine(ctx, o.IO, o.Backend, name, o.Agent)
	if err != nil {
		return 0, err
	}
	defer client.Close()
	for _, f := range local {
		l, err := client.LocalForward(ctx, f.Bind, f.Connect)
		if err != nil {
			return 0, err
		}
		defer l.Close()
	}
	for _, f := range remote {
		l, err := client.RemoteForward(ctx, f.Bind, f.Connect)
		if err != nil {
			return 0, err
		}
		defer l.Close()
	}
	line := guestCommandLine(o.Workdir, argv)
	o.IO.Debugf("guest command line: %s", line)
	if len(argv) == 0 || o.TTY {
		return client.Interactive(ctx, sshx.InteractiveOptions{
			Command: line, Stdin: o.IO.InFile(), Stdout: o.IO.Out, Stderr: o.IO.Err,
		})
	}
	return client.Run(ctx, line, stdinOrNil(o.IO), o.IO.Out, o.IO.Err, false)
}

// dialMachine connects to a machine's sshd, verifying its pinned host key.
func dialMachine(ctx context.Context, ios *hostenv.IOStreams, b backend.Backend, name string, agent bool) (*sshx.Client, error) {
	t, err := b.SSHTarget(ctx, name)
	if err != nil {
		return nil, err
	}
	if agent {
		t.AgentForward = true
	}
	ios.Debugf("ssh %s@%s, host key pinned in %s as %q%s", t.User, t.Addr, t.KnownHosts, t.HostKeyAlias, jumpNote(t))
	return sshx.Dial(ctx, *t)
}

func jumpNote(t *sshx.Target) string {
	if t.Jump == nil {
		return ""
	}
	return fmt.Sprintf(", through %s@%s", t.Jump.User, t.Jump.Addr)
}

// guestCommandLine is the line the guest's shell runs: change to dir, then
// run argv quoted word by word (or a login shell when argv is empty). A
// command does not run elsewhere when dir is missing (it could act on the
// wrong files); a shell starts in the home with a warning.
func guestCommandLine(dir string, argv []string) string {
	if dir == "" {
		return sshx.ShellQuote(argv)
	}
	qdir := sshx.ShellQuote([]string{dir})
	// The directory reaches printf as an argument, never inside the format
	// or double quotes, where the guest's shell would expand it.
	if len(argv) == 0 {
		return fmt.Sprintf(`cd %s 2>/dev/null || printf 'devvm: %%s is not a directory in the guest; starting in the home directory\n' %s >&2; exec "${SHELL:-/bin/sh}" -l`,
			qdir, qdir)
	}
	return fmt.Sprintf(`cd %s 2>/dev/null || { printf 'devvm: %%s is not a directory in the guest (is its share mounted?); choose another with --workdir\n' %s >&2; exit 1; }; %s`,
		qdir, qdir, sshx.ShellQuote(argv))
}

// stdinOrNil streams stdin to a command unless it is a terminal (then the
// command gets none, as `ssh host cmd` without -t would block on it). It
// returns an untyped nil reader then: a nil *os.File in an io.Reader is not
// nil, and the session would read from it.
func stdinOrNil(ios *hostenv.IOStreams) io.Reader {
	if ios.IsStdinTTY() {
		return nil
	}
	return ios.In
}

// splitSSHArgs separates the machine name from the command: everything
// after the first "--" is the command (normalizeArgs keeps that "--").
func splitSSHArgs(args, machines []string) (string, []string, error) {
	before, argv := args, []string(nil)
	if i := slices.Index(args, "--"); i >= 0 {
		before, argv = args[:i], args[i+1:]
		if len(before) > 1 {
			return "", nil, usageError("give at most one machine before --, got %s", strings.Join(before, " "))
		}
		if len(argv) == 0 {
			return "", nil, usageError("no command after --: devvm ssh [MACHINE] -- COMMAND ARGS…, or no -- for a shell")
		}
	} else if len(before) > 1 || len(before) == 1 && !slices.Contains(machines, before[0]) {
		return "", nil, noDashDash(before, machines)
	}
	name := ""
	if len(before) == 1 {
		name = before[0]
	}
	if name == "" {
		if len(machines) != 1 {
			return "", nil, usageError("this Vmfile defines several machines (%s): name one, e.g. devvm ssh %s -- CMD", strings.Join(machines, ", "), machines[0])
		}
		return machines[0], argv, nil
	}
	if err := knownMachine(name, machines); err != nil {
		return "", nil, err
	}
	return name, argv, nil
}

// noDashDash refuses a command given without "--", showing the order.
func noDashDash(args, machines []string) error {
	machine, cmd := "", args
	if slices.Contains(machines, args[0]) {
		machine, cmd = args[0]+" ", args[1:]
	}
	for _, a := range cmd {
		if isFlag(a) {
			return usageError("%s is not a flag of devvm ssh (flags go before the machine; a guest command goes after --): devvm ssh %s-- %s",
				a, machine, sshx.ShellQuote(cmd))
		}
	}
	if machine == "" {
		return usageError("%q is not a machine of this Vmfile (%s); put a command after --: devvm ssh -- %s",
			args[0], strings.Join(machines, ", "), sshx.ShellQuote(cmd))
	}
	return usageError("put the guest command after --: devvm ssh %s-- %s", machine, sshx.ShellQuote(cmd))
}
