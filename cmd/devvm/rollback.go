package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

func rollbackCommand() *cli.Command {
	return &cli.Command{
		Name:      "rollback",
		Usage:     "MicroVMs: point each machine back at its previous runner, restart it and verify it runs",
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
			if !b.Capabilities().Rollback {
				return fmt.Errorf("rollback is for microvm machines; a %s VM is rebuilt from its pinned inputs: revert dev-vm.scm or channels.scm (e.g. with git) and run `devvm reload`", b.Kind())
			}
			return b.Rollback(c.Context, names)
		},
	}
}
