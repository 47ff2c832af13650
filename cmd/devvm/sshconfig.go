package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

func sshConfigCommand() *cli.Command {
	return &cli.Command{
		Name:  "ssh-config",
		Usage: "print an OpenSSH config stanza for the VM (host key pinned, strict checking) for ssh -F, scp, rsync, editors",
		Description: "devvm also writes it to the VM's state directory at every `up`; to use `ssh devvm-<name>` directly add\n" +
			"   Include ~/.local/state/devvm/checkouts/*/*/ssh_config\nat the top of ~/.ssh/config.",
		ArgsUsage: "[MACHINE]",
		Action: func(c *cli.Context) error {
			b, _, _, err := openBackend(c)
			if err != nil {
				return err
			}
			name, err := oneMachine(c, b)
			if err != nil {
				return err
			}
			text, err := b.SSHConfig(c.Context, name)
			if err != nil {
				return err
			}
			fmt.Fprint(streams(c).Out, text)
			return nil
		},
	}
}
