package main

import (
	"github.com/devvm/devvm/launcher/backend"
	"github.com/urfave/cli/v2"
)

func buildCommand() *cli.Command {
	return &cli.Command{
		Name:  "build",
		Usage: "build the VM (guix time-machine -C channels.scm -- system vm), reusing the cached build when its inputs are unchanged",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "rebuild", Usage: "run guix even when the cached build is current"},
			timeoutFlag(0, "bound the guix run (default: [guix] build_timeout, 60m)"),
		},
		Action: func(c *cli.Context) error {
			b, _, _, err := openBackend(c)
			if err != nil {
				return err
			}
			return b.Build(c.Context, backend.BuildOptions{Rebuild: c.Bool("rebuild"), Timeout: c.Duration("timeout")})
		},
	}
}
