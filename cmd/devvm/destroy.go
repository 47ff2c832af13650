package main

import (
	"bufio"
	"context"
	"fmt"
	"strings"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/vmfile"
	"github.com/urfave/cli/v2"
)

// destroyOptions are the inputs of `devvm destroy`.
type destroyOptions struct {
	IO      *hostenv.IOStreams
	Backend backend.Backend
	Vmfile  *vmfile.Vmfile
	Names   []string
	Force   bool // skip the graceful halt
	Yes     bool // do not ask
	GC      bool
}

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
			b, vf, ui, err := openBackend(c)
			if err != nil {
				return err
			}
			names, err := machineArgs(c, b)
			if err != nil {
				return err
			}
			o := &destroyOptions{IO: streams(c), Backend: b, Vmfile: vf, Names: names, Force: c.Bool("force"), Yes: c.Bool("yes"), GC: c.Bool("gc")}
			if err := confirmDestroy(c.Context, o); err != nil {
				return err
			}
			ui.In = nil // asked already (or --yes): the backend must not ask again
			return b.Destroy(c.Context, names, backend.DestroyOptions{Force: o.Force, GC: o.GC, Yes: true})
		},
	}
}

// confirmDestroy asks before data is lost: a persistent disk (whether or
// not the VM runs), a running VM's unsaved work, or state kept on a
// hypervisor. It returns nil to go on.
func confirmDestroy(ctx context.Context, o *destroyOptions) error {
	if o.Yes {
		return nil
	}
	var loses []string
	if o.Vmfile != nil && o.Vmfile.Persistent {
		loses = append(loses, "the persistent disk (persistent = true in the Vmfile): every change made in the guest outside the shares")
	}
	if o.Vmfile != nil && o.Vmfile.MicroVM != nil && o.Vmfile.MicroVM.Remote != nil {
		loses = append(loses, "the machines' state on the hypervisor "+o.Vmfile.MicroVM.Remote.Destination)
	}
	how := "halted"
	if o.Force {
		how = "killed without a graceful halt (--force)"
	}
	if sts, err := o.Backend.Status(ctx, o.Names); err == nil {
		for _, s := range sts {
			if s.State != backend.Stopped {
				loses = append(loses, fmt.Sprintf("%s is %s: it is %s, losing what runs in it", s.Name, machineOf(s).State, how))
			}
		}
	}
	if len(loses) == 0 {
		return nil
	}
	what := "devvm destroy " + strings.Join(o.Names, " ") + " deletes:\n  - " + strings.Join(loses, "\n  - ")
	if !o.IO.CanPrompt() {
		return fmt.Errorf("%s\nthere is no terminal to ask on: run `devvm destroy --yes` to go ahead", what)
	}
	fmt.Fprintf(o.IO.Err, "%s\nDestroy? [y/N] ", what)
	answer, _ := bufio.NewReader(o.IO.In).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
		return fmt.Errorf("not destroyed")
	}
	return nil
}
