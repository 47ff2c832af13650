package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/project"
	"github.com/devvm/devvm/launcher/vmfile"
	"github.com/devvm/devvm/templates"
	"github.com/urfave/cli/v2"
)

// initOptions are the inputs of `devvm init`.
type initOptions struct {
	IO       *hostenv.IOStreams
	Env      *hostenv.Env
	Dir      string
	Name     string
	Template string
	Force    bool
	Nested   bool
	// Backend is "guix", "microvm" or "" (microvm when the checkout's flake
	// declares microvm machines).
	Backend string
	// Remote and RemoteCheckout describe a hypervisor (microvm).
	Remote, RemoteCheckout string
}

func initCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "write a Vmfile, dev-vm.scm and a pinned channels.scm into the checkout (never overwriting without --force)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "name", Usage: "VM name: lower-case letters, digits, '-' and '_' (default: the directory's name)"},
			&cli.StringFlag{Name: "template", Value: templates.DefaultGuix, Usage: "Guix config template: " + strings.Join(templates.GuixNames(), ", ")},
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "overwrite the Vmfile, dev-vm.scm and channels.scm"},
			&cli.BoolFlag{Name: "nested", Usage: "write a Vmfile even though a directory above has one"},
			&cli.StringFlag{Name: "backend", Usage: "guix, or microvm to write the Vmfile from the flake's microvm.nix machines (default: microvm in a flake checkout that declares some, else guix)"},
			&cli.StringFlag{Name: "remote", Usage: "microvm: the hypervisor, user@host[:port], that runs the machines"},
			&cli.StringFlag{Name: "remote-checkout", Usage: "microvm: the path of this checkout on the hypervisor (with --remote)"},
		},
		Action: func(c *cli.Context) error {
			dir := c.String("dir")
			if dir == "" {
				wd, err := os.Getwd()
				if err != nil {
					return err
				}
				dir = wd
			}
			return runInit(c.Context, &initOptions{IO: streams(c), Env: hostenv.FromOS(), Dir: dir, Name: c.String("name"),
				Template: c.String("template"), Force: c.Bool("force"), Nested: c.Bool("nested"),
				Backend: c.String("backend"), Remote: c.String("remote"), RemoteCheckout: c.String("remote-checkout")})
		},
	}
}

func runInit(ctx context.Context, o *initOptions) error {
	if o.Name != "" {
		if err := vmfile.ValidateName(o.Name); err != nil {
			return usageError("--name: %v", err)
		}
	}
	if !slices.Contains(templates.GuixNames(), o.Template) {
		return usageError("--template %q is not a template devvm has (%s)", o.Template, strings.Join(templates.GuixNames(), ", "))
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return err
	}
	if above := vmfileAbove(dir); above != "" && !o.Nested {
		return fmt.Errorf("%s already describes a VM for %s (devvm uses the nearest Vmfile upwards): run devvm commands here as they are, or `devvm init --nested` for a second VM of this subdirectory", above, dir)
	}
	ui := &backend.UI{}
	wireUI(ui, o.IO)
	switch o.Backend {
	case "", vmfile.BackendGuix, vmfile.BackendMicroVM:
	default:
		return usageError("--backend %q: use guix or microvm", o.Backend)
	}
	if (o.Remote == "") != (o.RemoteCheckout == "") {
		return usageError("--remote and --remote-checkout go together: the hypervisor and the path of this checkout there")
	}
	if o.Backend == vmfile.BackendMicroVM || (o.Backend == "" && project.HasFlake(dir)) {
		var remote *vmfile.Remote
		if o.Remote != "" {
			remote = &vmfile.Remote{Destination: o.Remote, Checkout: o.RemoteCheckout}
		}
		err := project.InitMicroVM(ctx, o.Env, ui, project.MicroVMOptions{Dir: dir, Name: o.Name, Remote: remote, Force: o.Force})
		if err == nil || o.Backend == vmfile.BackendMicroVM {
			return err
		}
		ui.Printf("not a microvm.nix flake (%v): writing a Guix VM", err)
	}
	return project.Init(ctx, o.Env, ui, project.InitOptions{Dir: dir, Name: o.Name, Template: o.Template, Force: o.Force})
}

// vmfileAbove returns the nearest Vmfile in a directory above dir, or "".
func vmfileAbove(dir string) string {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		p := filepath.Join(d, vmfile.FileName)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}
