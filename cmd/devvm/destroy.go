package main

import (
	"github.com/devvm/devvm/launcher/backend"
	"github.com/urfave/cli/v2"
)

func destroyCommand() *cli.Command {
	return &cli.Command{
		Name:      "destroy",
		Usage:     "halt the VM and delete its state, disks, known_hosts, sockets, registry entry and GC roots",
		ArgsUsage: "[MACHINE…]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "skip the graceful halt"},
			&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "do not ask before destroying a running VM or its persistent disk (needed without a terminal)"},
			&cli.BoolFlag{Name: "gc", Usage: "then collect the store's garbage and report the space freed"},
		},
		Action: func(c *cli.Context) error {
			b, _, _, err := open(c)
			if err != nil {
				return stopOrphans(c, err, true)
			}
			return b.Destroy(c.Context, machineArgs(c, b), backend.DestroyOptions{Force: c.Bool("force"), Yes: c.Bool("yes"), GC: c.Bool("gc")})
		},
	}
}
