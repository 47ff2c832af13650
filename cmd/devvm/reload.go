package main

import (
	"github.com/devvm/devvm/launcher/backend"
	"github.com/urfave/cli/v2"
)

func reloadCommand() *cli.Command {
	return &cli.Command{
		Name:      "reload",
		Usage:     "halt, then up (rebuilding when the inputs changed)",
		ArgsUsage: "[MACHINE…]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "halt without the graceful steps"},
			&cli.BoolFlag{Name: "rebuild", Usage: "run guix even when the cached build is current"},
			timeoutFlag(0, "how long to wait for SSH after the restart"),
		},
		Action: func(c *cli.Context) error {
			b, _, _, err := openBackend(c)
			if err != nil {
				return err
			}
			names, err := machineArgs(c, b)
			if err != nil {
				return err
			}
			if err := b.Halt(c.Context, names, backend.HaltOptions{Force: c.Bool("force"), Timeout: backend.DefaultHaltTimeout}); err != nil {
				return err
			}
			return b.Up(c.Context, names, backend.UpOptions{
				BuildOptions: backend.BuildOptions{Rebuild: c.Bool("rebuild")}, Timeout: c.Duration("timeout"),
			})
		},
	}
}
