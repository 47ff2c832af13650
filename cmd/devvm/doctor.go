package main

import (
	"fmt"
	"os"

	"github.com/devvm/devvm/launcher/doctor"
	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/vmfile"
	"github.com/urfave/cli/v2"
)

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:  "doctor",
		Usage: "check this host: guix and its daemon, QEMU and 9p, KVM, the SSH port, the Vmfile",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "machine-readable output"}},
		Action: func(c *cli.Context) error {
			dir, err := checkoutDir(c)
			if err != nil {
				return err
			}
			vf, vfErr := vmfile.Load(dir)
			checks := doctor.Run(c.Context, hostenv.FromOS(), dir, vf, vfErr)
			failed := false
			for _, ch := range checks {
				if !ch.OK && ch.Required {
					failed = true
				}
			}
			if c.Bool("json") {
				if err := printJSON(checks); err != nil {
					return err
				}
			} else {
				for _, ch := range checks {
					tag := "ok  "
					switch {
					case !ch.OK && ch.Required:
						tag = "FAIL"
					case !ch.OK:
						tag = "warn"
					}
					line := fmt.Sprintf("%s %-12s %s", tag, ch.Name, ch.Detail)
					if !ch.OK && ch.Fix != "" {
						line += " — fix: " + ch.Fix
					}
					fmt.Fprintln(os.Stdout, line)
				}
			}
			if failed {
				return cli.Exit("", 1)
			}
			return nil
		},
	}
}
