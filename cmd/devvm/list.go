package main

import (
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/backends"
	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/machine"
	"github.com/devvm/devvm/launcher/state"
	"github.com/urfave/cli/v2"
)

// listed is one row of `devvm list`.
type listed struct {
	Name     string `json:"name"`
	State    string `json:"state"`
	SSH      string `json:"ssh,omitempty"`
	PID      int    `json:"pid,omitempty"`
	Backend  string `json:"backend"`
	Checkout string `json:"checkout"`
	Problem  string `json:"problem,omitempty"`
}

func listCommand() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list every VM devvm started, across checkouts",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "machine-readable output"},
			&cli.BoolFlag{Name: "prune", Usage: "drop entries whose checkout or VM is gone"},
		},
		Action: func(c *cli.Context) error {
			env := hostenv.FromOS()
			reg := state.OpenRegistry(env.StateDir)
			entries, err := reg.List()
			if err != nil {
				return err
			}
			var rows []listed
			for _, e := range entries {
				row := listed{Name: e.Name, Backend: e.Backend, Checkout: e.Checkout, State: "unknown"}
				ui := &backend.UI{Err: os.Stderr}
				b, _, err := backends.Open(e.Checkout, env, ui)
				if err == nil {
					defer b.Close()
				}
				vm := state.New(e.Checkout, e.Name, env.Dirs())
				gone := false
				if err != nil {
					row.State, row.Problem, gone = "gone", err.Error(), true
				} else if sts, err := b.Status(c.Context, []string{e.Name}); err != nil {
					row.State, row.Problem, gone = "gone", err.Error(), true
				} else {
					s := sts[0]
					row.State, row.SSH, row.PID = s.State, s.SSH, s.PID
					if s.Outdated {
						row.State += " (outdated)"
					}
					if _, err := os.Stat(vm.Dir()); err != nil && s.PID == 0 {
						gone, row.Problem = true, "no state in "+vm.Dir()
					}
				}
				if gone && machine.RecordedAlive(vm) {
					// A Vmfile typo or an unreachable hypervisor is not a gone VM.
					gone, row.State = false, "running (its Vmfile does not load)"
				}
				if gone && c.Bool("prune") {
					if err := reg.Remove(e.ID); err != nil {
						return err
					}
					fmt.Fprintf(os.Stderr, "devvm: pruned %s (%s): %s\n", e.Name, e.Checkout, row.Problem)
					continue
				}
				rows = append(rows, row)
			}
			if c.Bool("json") {
				if rows == nil {
					rows = []listed{}
				}
				return printJSON(rows)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSTATE\tSSH\tPID\tBACKEND\tCHECKOUT")
			for _, r := range rows {
				pid := ""
				if r.PID > 0 {
					pid = fmt.Sprint(r.PID)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.State, r.SSH, pid, r.Backend, r.Checkout)
			}
			return tw.Flush()
		},
	}
}
