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
		Description: "devvm asks before it deletes a persistent disk or stops a running VM; without a terminal to ask\n" +
			"on, it refuses unless --yes is given.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "do not ask: delete the persistent disk and stop a running VM"},
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "skip the graceful halt (like pulling the plug); still asks unless --yes"},
			&cli.BoolFlag{Name: "gc", Usage: "then collect the store's garbage and report the space freed"},
		},
		Action: func(c *cli.Context) error {
			b, _, _, err := openBackend(c)
			if err != nil {
				return stopOrphans(c, err, true)
			}
			names, err := machineArgs(c, b)
			if err != nil {
				return err
			}
			return b.Destroy(c.Context, names, backend.DestroyOptions{Force: c.Bool("force"), Yes: c.Bool("yes"), GC: c.Bool("gc")})
		},
	}
}
