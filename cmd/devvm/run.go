package main

import (
	"github.com/urfave/cli/v2"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "run a machine in the foreground with its console on this terminal (like microvm -r; for Guix VMs: up --foreground)",
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
			return b.Run(c.Context, name)
		},
	}
}
