package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/devvm/devvm/launcher/backend"
	vmcopy "github.com/devvm/devvm/launcher/copy"
	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/urfave/cli/v2"
)

// cpOptions are the inputs of `devvm cp`.
type cpOptions struct {
	IO       *hostenv.IOStreams
	Backend  backend.Backend
	Src, Dst string
	Tar      string // the guest's tar command (tests)
}

func cpCommand() *cli.Command {
	return &cli.Command{
		Name:      "cp",
		Usage:     "copy files and directories to or from the VM over its SSH connection (pinned host key)",
		ArgsUsage: "SRC DST   (the guest side is MACHINE:PATH, or :PATH for the only machine)",
		Description: "devvm cp ./data.csv :/tmp/          upload a file into a guest directory\n" +
			"devvm cp :/var/log/app ./logs          download a directory tree (created as ./logs)\n" +
			"devvm cp build vm1:out                 a tree into ~/out of machine vm1\n" +
			"Like docker cp: to an existing directory the copy goes inside it; else DST is the copy; a DST\n" +
			"ending in / must be a directory. Relative guest paths start in the guest's home. Links are\n" +
			"copied as links. Needs tar in the guest (Guix System and busybox have it). A host path with a\n" +
			"colon is written ./a:b.",
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return usageError("devvm cp takes SRC and DST, one of them MACHINE:PATH or :PATH (got %d arguments)", c.NArg())
			}
			b, _, _, err := openBackend(c)
			if err != nil {
				return err
			}
			return runCp(c.Context, &cpOptions{IO: streams(c), Backend: b, Src: c.Args().Get(0), Dst: c.Args().Get(1)})
		},
	}
}

// guestPath splits NAME:PATH or :PATH; ok is false for a host path (no
// colon, or text before it that is no machine name: use ./a:b for a host
// file with a colon).
func guestPath(arg string, machines []string) (name, p string, ok bool, err error) {
	before, after, found := strings.Cut(arg, ":")
	if !found || strings.Contains(before, "/") {
		return "", "", false, nil
	}
	if before == "" {
		if len(machines) != 1 {
			return "", "", false, usageError("this Vmfile defines several machines (%s): name one, e.g. %s:%s", strings.Join(machines, ", "), machines[0], after)
		}
		return machines[0], after, true, nil
	}
	if err := knownMachine(before, machines); err != nil {
		return "", "", false, err
	}
	return before, after, true, nil
}

func runCp(ctx context.Context, o *cpOptions) error {
	ms := o.Backend.Machines()
	sName, sPath, sGuest, err := guestPath(o.Src, ms)
	if err != nil {
		return err
	}
	dName, dPath, dGuest, err := guestPath(o.Dst, ms)
	if err != nil {
		return err
	}
	switch {
	case sGuest && dGuest:
		return usageError("both %s and %s are in a guest: copy through the host (or run cp in the guest with devvm ssh)", o.Src, o.Dst)
	case !sGuest && !dGuest:
		return usageError("neither %s nor %s is in the guest: write the guest side as MACHINE:PATH or :PATH", o.Src, o.Dst)
	}
	name := sName
	if dGuest {
		name = dName
	}
	client, err := dialMachine(ctx, o.IO, o.Backend, name, false)
	if err != nil {
		return err
	}
	defer client.Close()
	opts := vmcopy.Options{Tar: o.Tar, Warn: func(m string) { fmt.Fprintf(o.IO.Err, "devvm: warning: %s\n", m) }}
	if dGuest {
		o.IO.Debugf("cp: upload %s to %s:%s", o.Src, name, dPath)
		return vmcopy.Upload(ctx, client, o.Src, dPath, opts)
	}
	dst := o.Dst
	if dst == "" {
		dst = "."
	}
	o.IO.Debugf("cp: download %s:%s to %s", name, sPath, dst)
	return vmcopy.Download(ctx, client, sPath, dst, opts)
}
