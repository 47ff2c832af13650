package main

import (
	"github.com/devvm/devvm/launcher/backend"
	"github.com/urfave/cli/v2"
)

func haltCommand() *cli.Command {
	return &cli.Command{
		Name:      "halt",
		Usage:     "stop the VM: `sudo poweroff` over SSH, then the ACPI button, then SIGTERM, then SIGKILL",
		ArgsUsage: "[MACHINE…]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "skip the graceful steps (like pulling the plug)"},
			timeoutFlag(backend.DefaultHaltTimeout, "total bound of all steps"),
		},
		Action: func(c *cli.Context) error {
			b, _, _, err := openBackend(c)
			if err != nil {
				return stopOrphans(c, err, false)
			}
			names, err := machineArgs(c, b)
			if err != nil {
				return err
			}
			return b.Halt(c.Context, names, backend.HaltOptions{Force: c.Bool("force"), Timeout: c.Duration("timeout")})
		},
	}
}
