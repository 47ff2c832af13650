package main

import (
	"os"

	"github.com/urfave/cli/v2"
)

func consoleCommand() *cli.Command {
	return &cli.Command{
		Name:      "console",
		Usage:     "attach to the VM's serial console (raw mode); Ctrl-] detaches",
		ArgsUsage: "[MACHINE]",
		Action: func(c *cli.Context) error {
			b, _, _, err := openBackend(c)
			if err != nil {
				return err
			}
			name, err := oneMachine(c, b)
			if err != nil {
				return err
			}
			return b.Console(c.Context, name, os.Stdin, os.Stdout)
		},
	}
}
