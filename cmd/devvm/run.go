package main

import (
	"context"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/urfave/cli/v2"
)

// runner is a backend that runs a machine in the foreground itself
// (`microvm -r` on the hypervisor).
type runner interface {
	Run(ctx context.Context, name string) error
}

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
			if r, ok := b.(runner); ok {
				return r.Run(c.Context, name)
			}
			return b.Up(c.Context, []string{name}, backend.UpOptions{Foreground: true})
		},
	}
}
