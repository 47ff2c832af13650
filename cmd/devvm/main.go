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

	"github.com/urfave/cli/v2"
)

// version is set by the build (-ldflags "-X main.version=…").
var version = "dev"

func main() {
	os.Exit(run(os.Args))
}

// run executes devvm with args and returns the exit status.
func run(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app := newApp()
	err := app.RunContext(ctx, args)
	closeAll()
	if err == nil {
		return 0
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(os.Stderr, "devvm: "+msg)
		}
		return ec.ExitCode()
	}
	fmt.Fprintln(os.Stderr, "devvm: error: "+err.Error())
	return 1
}

func newApp() *cli.App {
	return &cli.App{
		Name:    "devvm",
		Usage:   "reproducible developer VMs (Guix System in QEMU, NixOS MicroVMs)",
		Version: version,
		Description: "Run `devvm init` in a checkout, then `devvm up` and `devvm ssh`.\n" +
			"Flags go before arguments: `devvm up --timeout 20m`, not `devvm up NAME --timeout 20m`.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Aliases: []string{"C"}, Usage: "the checkout (default: the nearest directory upwards with a Vmfile)", EnvVars: []string{"DEVVM_DIR"}},
		},
		EnableBashCompletion: true,
		Suggest:              true,
		ExitErrHandler:       func(*cli.Context, error) {}, // run() prints and exits
		Commands: []*cli.Command{
			initCommand(), doctorCommand(), buildCommand(),
			upCommand(), statusCommand(), sshCommand(), sshConfigCommand(),
			haltCommand(), reloadCommand(), destroyCommand(),
			logsCommand(), consoleCommand(), listCommand(), gcCommand(),
			restartCommand(), rollbackCommand(), runCommand(),
			shareServeCommand(),
		},
	}
}
