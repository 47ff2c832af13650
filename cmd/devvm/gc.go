package main

import (
	"fmt"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/urfave/cli/v2"
)

func gcCommand() *cli.Command {
	return &cli.Command{
		Name:  "gc",
		Usage: "remove GC roots and disks of builds no VM uses any more, then delete from the store what only they held",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "dry-run", Usage: "list what would be removed; change nothing"},
			&cli.BoolFlag{Name: "store", Usage: "collect every dead item of the store (plain `guix gc`), not only what devvm's old builds held"},
		},
		Action: func(c *cli.Context) error {
			b, _, _, err := openBackend(c)
			if err != nil {
				return err
			}
			w := streams(c).Out
			rep, err := b.GC(c.Context, backend.GCOptions{DryRun: c.Bool("dry-run")})
			if rep != nil {
				verb := "removed"
				if c.Bool("dry-run") {
					verb = "would remove"
				}
				for _, r := range rep.Roots {
					fmt.Fprintf(w, "%s GC root %s\n", verb, r)
				}
				for _, f := range rep.Files {
					fmt.Fprintf(w, "%s %s\n", verb, f)
				}
				if len(rep.Roots)+len(rep.Files) == 0 {
					fmt.Fprintln(w, "no unused builds")
				}
				if rep.StoreGC {
					if rep.FreedBytes >= 0 {
						fmt.Fprintf(w, "store garbage collection freed %d bytes\n", rep.FreedBytes)
					} else {
						fmt.Fprintln(w, "store garbage collection done (it did not report the space freed)")
					}
				}
			}
			return err
		},
	}
}
