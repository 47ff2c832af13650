package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/urfave/cli/v2"
)

// statusOptions are the inputs of `devvm status`.
type statusOptions struct {
	IO      *hostenv.IOStreams
	Backend backend.Backend
	Names   []string
	Output  output
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show the VM's state, pid, uptime, accelerator, SSH address, shares, forwards, CPU and memory",
		ArgsUsage: "[MACHINE…]",
		Flags:     formatFlags("the machines"),
		Action: func(c *cli.Context) error {
			out, err := outputOf(c)
			if err != nil {
				return err
			}
			b, _, _, err := openBackend(c)
			if err != nil {
				return err
			}
			names, err := machineArgs(c, b)
			if err != nil {
				return err
			}
			return runStatus(c.Context, &statusOptions{IO: streams(c), Backend: b, Names: names, Output: out})
		},
	}
}

func runStatus(ctx context.Context, o *statusOptions) error {
	t, err := o.Output.template()
	if err != nil {
		return err
	}
	sts, err := o.Backend.Status(ctx, o.Names)
	if err != nil {
		return err
	}
	ms := make([]machineJSON, 0, len(sts))
	for _, s := range sts {
		ms = append(ms, machineOf(s))
	}
	return o.Output.print(o.IO.Out, t, ms, func() error {
		for _, s := range sts {
			printStatus(o.IO.Out, s)
		}
		return nil
	})
}

func printStatus(w io.Writer, s backend.Status) {
	m := machineOf(s)
	state := m.State
	if m.Outdated {
		state += " (outdated)"
	}
	fmt.Fprintf(w, "%s: %s", m.Name, state)
	if m.Reason != "" {
		fmt.Fprintf(w, " — %s", m.Reason)
	}
	fmt.Fprintln(w)
	kv := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "  %-9s %s\n", k+":", v)
		}
	}
	if m.PID > 0 {
		kv("pid", fmt.Sprint(m.PID))
	}
	kv("uptime", m.Uptime)
	kv("accel", m.Accel)
	kv("ssh", m.SSH)
	shares, forwards := s.Shares, s.Forwards
	if len(m.Shares) > 0 {
		shares = nil
		for _, sh := range m.Shares {
			d := sh.Host + " → " + sh.Guest
			if sh.ReadOnly {
				d += " (read-only)"
			}
			if sh.Mode == "ssh" {
				d += " over SSH"
				if sh.Server > 0 {
					d += fmt.Sprintf(" (server pid %d)", sh.Server)
				}
			}
			if sh.Problem != "" {
				d += ": " + sh.Problem
			}
			shares = append(shares, d)
		}
	}
	if len(m.Forwards) > 0 {
		forwards = nil
		for _, f := range m.Forwards {
			forwards = append(forwards, fmt.Sprintf("%s:%d → %d/%s", f.Bind, f.Host, f.Guest, f.Proto))
		}
	}
	kv("shares", strings.Join(shares, "; "))
	kv("forwards", strings.Join(forwards, "; "))
	if m.PID > 0 {
		kv("usage", fmt.Sprintf("CPU %.1f%% (average since start), memory %.0f MiB", m.CPU, float64(m.RSS)/(1<<20)))
	}
	if len(m.BuildKey) >= 12 {
		kv("build", m.BuildKey[:12])
	}
	kv("hint", m.Hint)
}
