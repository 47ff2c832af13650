package main

import (
	"fmt"
	"log"
	"os"

	"github.com/devvm/devvm/launcher/share"
	"github.com/devvm/devvm/launcher/sshx"
	"github.com/urfave/cli/v2"
)

// shareServeCommand is the hidden server devvm starts detached (new
// session, stdin /dev/null, output to .devvm/<vm>/share-<tag>.log) for each
// `mode = "ssh"` share once the VM's SSH is ready (launcher/machine/shares.go
// builds this command line). It mounts the share in the guest over 9P
// forwarded through SSH and serves it until the guest unmounts it, SSH
// drops, or it gets SIGTERM (then it unmounts first).
func shareServeCommand() *cli.Command {
	return &cli.Command{
		Name:   "share-serve",
		Usage:  "serve one share to a running VM over SSH (started by `devvm up`)",
		Hidden: true,
		Flags: append(targetFlags(), []cli.Flag{
			&cli.StringFlag{Name: "root", Required: true, Usage: "host directory to serve"},
			&cli.StringFlag{Name: "guest", Required: true, Usage: "mount point in the guest"},
			&cli.BoolFlag{Name: "readonly", Usage: "serve read-only"},
			&cli.IntFlag{Name: "msize", Usage: "9P message size (default 512 KiB)"},
			&cli.StringFlag{Name: "pidfile", Usage: "pidfile to lock while serving"},
			&cli.StringFlag{Name: "marker", Usage: "identifies this process to devvm (proc.Check looks for it in the command line)"},
			&cli.IntFlag{Name: "ready-fd", Usage: "file descriptor to write \"ready\" on once mounted (then closed); an error is written there instead"},
			&cli.DurationFlag{Name: "keepalive", Value: share.DefaultKeepAlive, Usage: "SSH keepalive interval"},
		}...),
		Action: func(c *cli.Context) error {
			lg := log.New(os.Stderr, fmt.Sprintf("share-serve[%d] ", os.Getpid()), log.LstdFlags)
			var ready *os.File
			if fd := c.Int("ready-fd"); fd > 2 {
				ready = os.NewFile(uintptr(fd), "ready")
			}
			t, err := sshx.DecodeTarget(c)
			if err == nil {
				err = share.RunDaemon(c.Context, share.DaemonConfig{
					Target: *t,
					Root:   c.String("root"), Guest: c.String("guest"), ReadOnly: c.Bool("readonly"),
					Msize: c.Int("msize"), KeepAlive: c.Duration("keepalive"), Pidfile: c.String("pidfile"),
					Logf: lg.Printf,
					Ready: func(port int) {
						lg.Printf("ready: %s is mounted at %s in the guest (guest port %d)", c.String("root"), c.String("guest"), port)
						if ready != nil {
							fmt.Fprintln(ready, "ready")
							ready.Close()
							ready = nil
						}
					},
				})
			}
			if err != nil {
				lg.Printf("error: %v", err)
				if ready != nil {
					fmt.Fprint(ready, err.Error())
					ready.Close()
				}
				return err
			}
			lg.Printf("exiting")
			return nil
		},
	}
}

// targetFlags declares the flags of sshx's target codec (EncodeTarget
// writes them, DecodeTarget reads them) for the guest and its jump host.
func targetFlags() []cli.Flag {
	var out []cli.Flag
	for _, prefix := range []string{"", "jump-"} {
		for _, f := range sshx.TargetFlags(prefix) {
			switch {
			case f.Bool:
				out = append(out, &cli.BoolFlag{Name: f.Name, Usage: f.Usage})
			case f.List:
				out = append(out, &cli.StringSliceFlag{Name: f.Name, Usage: f.Usage})
			default:
				out = append(out, &cli.StringFlag{Name: f.Name, Usage: f.Usage})
			}
		}
	}
	return out
}
