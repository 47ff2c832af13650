package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/urfave/cli/v2"
)

// logsOptions are the inputs of `devvm logs`.
type logsOptions struct {
	IO      *hostenv.IOStreams
	Backend backend.Backend
	Name    string
	Follow  bool
	Lines   int
}

func logsCommand() *cli.Command {
	return &cli.Command{
		Name:      "logs",
		Usage:     "print the VM's serial console log (journal of the unit for remote MicroVMs)",
		ArgsUsage: "[MACHINE]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing new output (before the first boot: wait for it)"},
			&cli.IntFlag{Name: "lines", Aliases: []string{"n"}, Usage: "only the last N lines"},
		},
		Action: func(c *cli.Context) error {
			if c.Int("lines") < 0 {
				return usageError("--lines must be positive")
			}
			b, _, _, err := openBackend(c)
			if err != nil {
				return err
			}
			name, err := oneMachine(c, b)
			if err != nil {
				return err
			}
			return runLogs(c.Context, &logsOptions{IO: streams(c), Backend: b, Name: name, Follow: c.Bool("follow"), Lines: c.Int("lines")})
		},
	}
}

func runLogs(ctx context.Context, o *logsOptions) error {
	opts := backend.LogOptions{Follow: o.Follow, Lines: o.Lines}
	if o.Follow {
		opts.WaitingForBoot = func() {
			fmt.Fprintf(o.IO.Err, "devvm: %s has not booted yet: waiting for its first boot (`devvm up %s` starts it; Ctrl-C stops waiting)\n", o.Name, o.Name)
		}
	}
	err := o.Backend.Logs(ctx, o.Name, opts, o.IO.Out)
	if errors.Is(err, backend.ErrNoLog) {
		return fmt.Errorf("%s has no log yet: it never booted. `devvm up %s` starts it; `devvm logs -f %s` waits for its first boot", o.Name, o.Name, o.Name)
	}
	return err
}
