// Command devvm launches reproducible developer VMs: Guix System VMs built
// from the checkout's dev-vm.scm and pinned channels, booted in QEMU with
// the checkout shared over 9p and SSH on 127.0.0.1, and NixOS MicroVMs.
// This package only wires the command line; the engine is in launcher/.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/urfave/cli/v2"
)

func main() {
	os.Exit(run(hostenv.System(), os.Args))
}

// run executes devvm with args on the streams ios and returns the exit
// status: 0, the failed step's status, 1 for errors, 2 for usage errors.
func run(ios *hostenv.IOStreams, args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app := newApp(ios)
	err := app.RunContext(ctx, normalizeArgs(app, args))
	closeAll()
	if err == nil {
		return 0
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(ios.Err, "devvm: "+msg)
		}
		return ec.ExitCode()
	}
	fmt.Fprintln(ios.Err, "devvm: error: "+err.Error())
	return 1
}

func newApp(ios *hostenv.IOStreams) *cli.App {
	app := &cli.App{
		Name:    "devvm",
		Usage:   "reproducible developer VMs (Guix System in QEMU, NixOS MicroVMs)",
		Version: versionString(),
		Description: "Run `devvm init` in a checkout, then `devvm up` and `devvm ssh`.\n" +
			"devvm uses the Vmfile of the nearest directory upwards (or -C DIR, or $DEVVM_DIR).\n" +
			"Everything after `--` belongs to the guest command: devvm ssh -- git log -- README.md",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Aliases: []string{"C"}, Usage: "the checkout (default: the nearest directory upwards with a Vmfile)", EnvVars: []string{"DEVVM_DIR"}},
			&cli.BoolFlag{Name: "debug", Usage: "show what devvm runs (guix and QEMU command lines, SSH targets) on stderr"},
			cli.HelpFlag, // urfave adds it only with its own help command; helpCommand replaces that
		},
		Metadata:  map[string]any{iosKey: ios},
		Writer:    ios.Out,
		ErrWriter: ios.Err,
		Suggest:   true,
		Before: func(c *cli.Context) error {
			if c.Bool("debug") {
				ios.SetDebug(ios.Err)
			}
			return nil
		},
		// An unknown command: the root action runs with it as an argument.
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError("%q is not a devvm command (devvm --help lists them)", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
		OnUsageError:    onUsageError,
		HideHelpCommand: true,                         // helpCommand below: an unknown topic is a usage error
		ExitErrHandler:  func(*cli.Context, error) {}, // run() prints and exits
		Commands: []*cli.Command{
			initCommand(), doctorCommand(), buildCommand(),
			upCommand(), statusCommand(), sshCommand(), sshConfigCommand(), cpCommand(),
			haltCommand(), reloadCommand(), destroyCommand(),
			logsCommand(), consoleCommand(), listCommand(), gcCommand(),
			restartCommand(), rollbackCommand(), runCommand(),
			shareServeCommand(),
			versionCommand(), completionCommand(), completeMachinesCommand(), helpCommand(),
		},
	}
	for _, cmd := range app.Commands {
		cmd.OnUsageError = onUsageError
	}
	return app
}

// helpCommand is urfave/cli's, except that an unknown topic is a usage error.
func helpCommand() *cli.Command {
	return &cli.Command{
		Name:      "help",
		Aliases:   []string{"h"},
		Usage:     "show the commands, or the help of one command",
		ArgsUsage: "[COMMAND]",
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return cli.ShowAppHelp(c)
			}
			if c.App.Command(c.Args().First()) == nil {
				return usageError("%q is not a devvm command (devvm help lists them)", c.Args().First())
			}
			return cli.ShowCommandHelp(c.Lineage()[1], c.Args().First())
		},
	}
}

// onUsageError turns a flag parsing error into a usage error: a short
// message and exit status 2, not the whole help.
func onUsageError(c *cli.Context, err error, _ bool) error {
	name := "devvm"
	if c.Command != nil && c.Command.Name != "" && c.Command.Name != "devvm" {
		name += " " + c.Command.Name
	}
	return usageError("%v (see %s --help)", err, name)
}
