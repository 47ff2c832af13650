package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/urfave/cli/v2"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show the VM's state, pid, uptime, accelerator, SSH address, shares, forwards, CPU and memory",
		ArgsUsage: "[MACHINE…]",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "machine-readable output"}},
		Action: func(c *cli.Context) error {
			b, _, _, err := open(c)
			if err != nil {
				return err
			}
			sts, err := b.Status(c.Context, machineArgs(c, b))
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(sts)
			}
			for _, s := range sts {
				printStatus(s)
			}
			return nil
		},
	}
}

func printStatus(s backend.Status) {
	w := os.Stdout
	state := s.State
	if s.Outdated {
		state += " (outdated)"
	}
	fmt.Fprintf(w, "%s: %s", s.Name, state)
	if s.Reason != "" {
		fmt.Fprintf(w, " — %s", s.Reason)
	}
	fmt.Fprintln(w)
	kv := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "  %-9s %s\n", k+":", v)
		}
	}
	if s.PID > 0 {
		kv("pid", fmt.Sprint(s.PID))
	}
	kv("uptime", s.Uptime)
	kv("accel", s.Accel)
	kv("ssh", s.SSH)
	kv("shares", strings.Join(s.Shares, "; "))
	kv("forwards", strings.Join(s.Forwards, "; "))
	if s.PID > 0 {
		kv("usage", fmt.Sprintf("CPU %.1f%% (average since start), memory %.0f MiB", s.CPU, float64(s.RSS)/(1<<20)))
	}
	if len(s.BuildKey) >= 12 {
		kv("build", s.BuildKey[:12])
	}
	kv("hint", s.Hint)
}
