package main

import (
	"os"

	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/project"
	"github.com/devvm/devvm/templates"
	"github.com/urfave/cli/v2"
)

func initCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "write a Vmfile, dev-vm.scm and a pinned channels.scm into the checkout (never overwriting without --force)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "name", Usage: "VM name (default: the directory's name)"},
			&cli.StringFlag{Name: "template", Value: templates.DefaultGuix, Usage: "Guix config template: " + joinNames(templates.GuixNames())},
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "overwrite the Vmfile, dev-vm.scm and channels.scm"},
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
			return project.Init(c.Context, hostenv.FromOS(), newUI(), project.InitOptions{
				Dir: dir, Name: c.String("name"), Template: c.String("template"), Force: c.Bool("force"),
			})
		},
	}
}

func joinNames(ns []string) string {
	s := ""
	for i, n := range ns {
		if i > 0 {
			s += ", "
		}
		s += n
	}
	return s
}
