package main

import (
	"context"
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

// listOptions are the inputs of `devvm list`.
type listOptions struct {
	IO     *hostenv.IOStreams
	Env    *hostenv.Env
	Prune  bool
	Output output
}

func listCommand() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list every VM devvm started, across checkouts",
		Flags: append(formatFlags("the machines"),
			&cli.BoolFlag{Name: "prune", Usage: "drop entries whose checkout or VM is gone"}),
		Action: func(c *cli.Context) error {
			out, err := outputOf(c)
			if err != nil {
				return err
			}
			return runList(c.Context, &listOptions{IO: streams(c), Env: hostenv.FromOS(), Prune: c.Bool("prune"), Output: out})
		},
	}
}

func runList(ctx context.Context, o *listOptions) error {
	t, err := o.Output.template()
	if err != nil {
		return err
	}
	reg := state.OpenRegistry(o.Env.StateDir)
	entries, err := reg.List()
	if err != nil {
		return err
	}
	ms := []machineJSON{}
	for _, e := range entries {
		m, gone := listEntry(ctx, o, e)
		if gone && o.Prune {
			if err := reg.Remove(e.ID); err != nil {
				return err
			}
			fmt.Fprintf(o.IO.Err, "devvm: pruned %s (%s): %s\n", e.Name, e.Checkout, m.Reason)
			continue
		}
		ms = append(ms, m)
	}
	return o.Output.print(o.IO.Out, t, ms, func() error {
		tw := tabwriter.NewWriter(o.IO.Out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSTATE\tSSH\tPID\tBACKEND\tCHECKOUT")
		for _, m := range ms {
			pid, st := "", m.State
			if m.PID > 0 {
				pid = fmt.Sprint(m.PID)
			}
			if m.Outdated {
				st += " (outdated)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, st, m.SSH, pid, m.Backend, m.Checkout)
		}
		return tw.Flush()
	})
}

// listEntry reports one registry entry, and whether its checkout or VM is
// gone (a candidate for --prune).
func listEntry(ctx context.Context, o *listOptions, e state.Entry) (machineJSON, bool) {
	broken := func(why string) (machineJSON, bool) {
		return machineJSON{Name: e.Name, Backend: e.Backend, Checkout: e.Checkout, State: backend.Broken, Reason: why,
			Shares: []shareJSON{}, Forwards: []forwardJSON{}}, true
	}
	ui := &backend.UI{}
	wireUI(ui, o.IO)
	vm := state.New(e.Checkout, e.Name, o.Env.Dirs())
	b, _, err := backends.Open(e.Checkout, o.Env, ui)
	if err != nil {
		m, gone := broken(err.Error())
		// A Vmfile typo or an unreachable hypervisor is not a gone VM.
		return m, gone && !machine.RecordedAlive(vm)
	}
	defer b.Close()
	sts, err := b.Status(ctx, []string{e.Name})
	if err != nil || len(sts) != 1 {
		return broken(fmt.Sprint(err))
	}
	m := machineOf(sts[0])
	m.Checkout = e.Checkout
	if _, err := os.Stat(vm.Dir()); err != nil && m.PID == 0 {
		m.Reason = "no state in " + vm.Dir()
		return m, true
	}
	return m, false
}
