package main

import (
	"github.com/devvm/devvm/launcher/backend"
	"github.com/urfave/cli/v2"
)

func upCommand() *cli.Command {
	return &cli.Command{
		Name:      "up",
		Aliases:   []string{"deploy"},
		Usage:     "build when needed, boot the VM and wait until SSH works (MicroVMs on a hypervisor: deploy)",
		ArgsUsage: "[MACHINE…]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "rebuild", Usage: "run guix even when the cached build is current"},
			&cli.BoolFlag{Name: "foreground", Usage: "serial console on this terminal (Ctrl-a x quits); the VM stops when devvm ends"},
			timeoutFlag(0, "how long to wait for SSH (default: the Vmfile's boot_timeout, 10m)"),
			&cli.DurationFlag{Name: "build-timeout", Usage: "bound the guix run (default: [guix] build_timeout)"},
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
			return b.Up(c.Context, names, backend.UpOptions{
				BuildOptions: backend.BuildOptions{Rebuild: c.Bool("rebuild"), Timeout: c.Duration("build-timeout")},
				Timeout:      c.Duration("timeout"), Foreground: c.Bool("foreground"),
			})
		},
	}
}
