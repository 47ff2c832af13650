package main

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/devvm/devvm/launcher/sshx"
	"github.com/urfave/cli/v2"
)

// TestServeTargetRoundTrip: the flags sshx.EncodeTarget writes rebuild the
// same target in share-serve, jump host and cipher preference included.
func TestServeTargetRoundTrip(t *testing.T) {
	vmKey, err := sshx.EnsureUserKey(filepath.Join(t.TempDir(), "vm"))
	if err != nil {
		t.Fatal(err)
	}
	hvKey, err := sshx.EnsureUserKey(filepath.Join(t.TempDir(), "hv"))
	if err != nil {
		t.Fatal(err)
	}
	want := sshx.Target{Addr: "10.0.0.2:22", User: "dev", Key: vmKey, KnownHosts: "/kh/vm", HostKeyAlias: "devvm-vm1",
		Ciphers: sshx.EmulatedCPUCiphers,
		Jump:    &sshx.Target{Addr: "hv:22", User: "root", Key: hvKey, UseAgent: true, KnownHosts: "/kh/hv"}}
	args, err := sshx.EncodeTarget(want)
	if err != nil {
		t.Fatal(err)
	}
	cmd := shareServeCommand()
	var got *sshx.Target
	cmd.Action = func(c *cli.Context) error {
		got, err = sshx.DecodeTarget(c)
		return err
	}
	app := &cli.App{Commands: []*cli.Command{cmd}}
	if err := app.Run(append([]string{"devvm", "share-serve", "--root", "/r", "--guest", "/g"}, args...)); err != nil {
		t.Fatalf("share-serve %q: %v", args, err)
	}
	same := func(what string, a, b *sshx.Target) {
		if a.Addr != b.Addr || a.User != b.User || a.KnownHosts != b.KnownHosts || a.HostKeyAlias != b.HostKeyAlias ||
			a.UseAgent != b.UseAgent || !slices.Equal(a.Ciphers, b.Ciphers) || a.Key.PrivatePath != b.Key.PrivatePath {
			t.Errorf("%s: share-serve rebuilt\n%+v\nfrom %q, want\n%+v", what, *a, args, *b)
		}
	}
	same("guest", got, &want)
	if got.Jump == nil {
		t.Fatalf("share-serve lost the jump host (args %q)", args)
	}
	same("jump host", got.Jump, want.Jump)
}
