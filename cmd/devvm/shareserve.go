package main

import (
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/devvm/devvm/launcher/share"
	"github.com/devvm/devvm/launcher/sshx"
	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/ssh"
)

// shareServeCommand is the hidden server devvm starts detached (new
// session, stdin /dev/null, output to .devvm/<vm>/share-<tag>.log) for each
// `mode = "ssh"` share once the VM's SSH is ready (launcher/share/process.go
// builds this command line). It mounts the share in the guest over 9P
// forwarded through SSH and serves it until the guest unmounts it, SSH
// drops, or it gets SIGTERM (then it unmounts first).
func shareServeCommand() *cli.Command {
	return &cli.Command{
		Name:   "share-serve",
		Usage:  "serve one share to a running VM over SSH (started by `devvm up`)",
		Hidden: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "addr", Required: true, Usage: "the guest's sshd, host:port (resolved by the jump host with --jump-addr)"},
			&cli.StringFlag{Name: "user", Required: true, Usage: "guest user (needs passwordless sudo)"},
			&cli.StringFlag{Name: "key", Usage: "private key file"},
			&cli.StringSliceFlag{Name: "extra-key", Usage: "another private key file to offer the guest (repeatable)"},
			&cli.BoolFlag{Name: "agent", Usage: "also offer the keys of the SSH agent at $SSH_AUTH_SOCK"},
			&cli.StringFlag{Name: "known-hosts", Required: true, Usage: "known_hosts file with the pinned host key"},
			&cli.StringFlag{Name: "host-key-alias", Usage: "name the host key is recorded under"},
			&cli.StringFlag{Name: "ciphers", Usage: "SSH cipher preference, comma-separated (default: x/crypto's)"},
			&cli.StringFlag{Name: "jump-addr", Usage: "jump host (host:port) to reach the guest through, like ssh -J"},
			&cli.StringFlag{Name: "jump-user", Usage: "user on the jump host"},
			&cli.StringFlag{Name: "jump-key", Usage: "private key file for the jump host"},
			&cli.BoolFlag{Name: "jump-agent", Usage: "offer the SSH agent's keys to the jump host"},
			&cli.StringFlag{Name: "jump-known-hosts", Usage: "known_hosts file with the jump host's key"},
			&cli.StringFlag{Name: "jump-host-key-alias", Usage: "name the jump host's key is recorded under"},
			&cli.StringFlag{Name: "jump-ciphers", Usage: "SSH cipher preference for the jump host"},
			&cli.StringFlag{Name: "root", Required: true, Usage: "host directory to serve"},
			&cli.StringFlag{Name: "guest", Required: true, Usage: "mount point in the guest"},
			&cli.BoolFlag{Name: "readonly", Usage: "serve read-only"},
			&cli.IntFlag{Name: "msize", Usage: "9P message size (default 512 KiB)"},
			&cli.StringFlag{Name: "pidfile", Usage: "pidfile to lock while serving"},
			&cli.StringFlag{Name: "marker", Usage: "identifies this process to devvm (proc.Check looks for it in the command line)"},
			&cli.IntFlag{Name: "ready-fd", Usage: "file descriptor to write \"ready\" on once mounted (then closed); an error is written there instead"},
			&cli.DurationFlag{Name: "keepalive", Value: share.DefaultKeepAlive, Usage: "SSH keepalive interval"},
		},
		Action: func(c *cli.Context) error {
			lg := log.New(os.Stderr, fmt.Sprintf("share-serve[%d] ", os.Getpid()), log.LstdFlags)
			var ready *os.File
			if fd := c.Int("ready-fd"); fd > 2 {
				ready = os.NewFile(uintptr(fd), "ready")
			}
			t, err := serveTarget(c)
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

// serveTarget rebuilds the sshx.Target a backend passed as flags
// (share.TargetArgs), with the jump host when --jump-addr is set.
func serveTarget(c *cli.Context) (*sshx.Target, error) {
	hop := func(prefix string) (*sshx.Target, error) {
		t := &sshx.Target{Addr: c.String(prefix + "addr"), User: c.String(prefix + "user"), UseAgent: c.Bool(prefix + "agent"),
			KnownHosts: c.String(prefix + "known-hosts"), HostKeyAlias: c.String(prefix + "host-key-alias"),
			HandshakeTimeout: 30 * time.Second}
		if s := c.String(prefix + "ciphers"); s != "" {
			t.Ciphers = strings.Split(s, ",")
		}
		if t.User == "" || t.KnownHosts == "" {
			return nil, fmt.Errorf("--%saddr needs --%suser and --%sknown-hosts", prefix, prefix, prefix)
		}
		if p := c.String(prefix + "key"); p != "" {
			k, err := sshx.LoadKey(p)
			if err != nil {
				return nil, err
			}
			t.Key = k
		} else if !t.UseAgent {
			return nil, fmt.Errorf("no way to log in to %s: give --%skey or --%sagent", t.Addr, prefix, prefix)
		}
		return t, nil
	}
	t, err := hop("")
	if err != nil {
		return nil, err
	}
	var signers []ssh.Signer
	for _, p := range c.StringSlice("extra-key") {
		k, err := sshx.LoadKey(p)
		if err != nil {
			return nil, err
		}
		signers = append(signers, k.Signer)
	}
	if len(signers) > 0 {
		t.Auth = []ssh.AuthMethod{ssh.PublicKeys(signers...)}
	}
	if c.String("jump-addr") != "" {
		if t.Jump, err = hop("jump-"); err != nil {
			return nil, err
		}
	}
	return t, nil
}
