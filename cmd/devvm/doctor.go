package main

import (
	"context"
	"fmt"

	"github.com/devvm/devvm/launcher/doctor"
	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/vmfile"
	"github.com/urfave/cli/v2"
)

// doctorOptions are the inputs of `devvm doctor`.
type doctorOptions struct {
	IO     *hostenv.IOStreams
	Env    *hostenv.Env
	Dir    string // the checkout
	Output output
}

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:  "doctor",
		Usage: "check this host: guix and its daemon, QEMU and 9p, KVM, the SSH port, the Vmfile",
		Flags: formatFlags("the checks"),
		Action: func(c *cli.Context) error {
			out, err := outputOf(c)
			if err != nil {
				return err
			}
			dir, err := checkoutDir(c)
			if err != nil {
				return err
			}
			return runDoctor(c.Context, &doctorOptions{IO: streams(c), Env: hostenv.FromOS(), Dir: dir, Output: out})
		},
	}
}

// runDoctor prints the checks; it fails (exit 1) when a required one does.
func runDoctor(ctx context.Context, o *doctorOptions) error {
	t, err := o.Output.template()
	if err != nil {
		return err
	}
	vf, vfErr := vmfile.Load(o.Dir)
	res := checksJSON{Schema: Schema, OK: true, Checks: []checkJSON{}}
	for _, ch := range doctor.Run(ctx, o.Env, o.Dir, vf, vfErr) {
		if !ch.OK && ch.Required {
			res.OK = false
		}
		res.Checks = append(res.Checks, checkJSON{Name: ch.Name, OK: ch.OK, Required: ch.Required, Detail: ch.Detail, Fix: ch.Fix})
	}
	switch {
	case o.Output.JSON:
		err = printJSON(o.IO.Out, res)
	case t != nil:
		err = eachFormatted(o.IO.Out, t, res.Checks)
	default:
		for _, ch := range res.Checks {
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
			fmt.Fprintln(o.IO.Out, line)
		}
	}
	if err != nil {
		return err
	}
	if !res.OK {
		return cli.Exit("", 1)
	}
	return nil
}
