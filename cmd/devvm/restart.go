package main

import (
	"github.com/urfave/cli/v2"
)

func restartCommand() *cli.Command {
	return &cli.Command{
		Name:      "restart",
		Usage:     "halt machines and boot their last build again, without rebuilding",
		ArgsUsage: "[MACHINE…]",
		Action: func(c *cli.Context) error {
			b, _, _, err := openBackend(c)
			if err != nil {
				return err
			}
			names, err := machineArgs(c, b)
			if err != nil {
				return err
			}
			return b.Restart(c.Context, names)
		},
	}
}
