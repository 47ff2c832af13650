package main

import (
	"context"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/engine"
	"github.com/urfave/cli/v2"
)

// restarter is a backend that restarts machines itself (a remote
// hypervisor's `systemctl restart`).
type restarter interface {
	Restart(ctx context.Context, names []string) error
}

func restartCommand() *cli.Command {
	return &cli.Command{
		Name:      "restart",
		Usage:     "restart machines without rebuilding (MicroVMs: systemctl restart microvm@NAME, then verify)",
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
			if r, ok := b.(restarter); ok {
				return r.Restart(c.Context, names)
			}
			if err := b.Halt(c.Context, names, backend.HaltOptions{Timeout: engine.DefaultHaltTimeout}); err != nil {
				return err
			}
			return b.Up(c.Context, names, backend.UpOptions{})
		},
	}
}
