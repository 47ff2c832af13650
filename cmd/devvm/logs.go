package main

import (
	"os"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/urfave/cli/v2"
)

func logsCommand() *cli.Command {
	return &cli.Command{
		Name:      "logs",
		Usage:     "print the VM's serial console log (journal of the unit for remote MicroVMs)",
		ArgsUsage: "[MACHINE]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing new output"},
			&cli.IntFlag{Name: "lines", Aliases: []string{"n"}, Usage: "only the last N lines"},
		},
		Action: func(c *cli.Context) error {
			b, _, _, err := open(c)
			if err != nil {
				return err
			}
			name, err := oneMachine(c, b, c.NArg())
			if err != nil {
				return err
			}
			if c.Int("lines") < 0 {
				return usageError("--lines must be positive")
			}
			return b.Logs(c.Context, name, backend.LogOptions{Follow: c.Bool("follow"), Lines: c.Int("lines")}, os.Stdout)
		},
	}
}
