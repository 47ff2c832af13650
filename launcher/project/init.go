// Package project reads and writes a checkout's own files: `devvm init`.
package project

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/devvm/devvm/channels"
	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/guix"
	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/state"
	"github.com/devvm/devvm/launcher/vmfile"
	"github.com/devvm/devvm/templates"
)

// InitOptions for Init.
type InitOptions struct {
	Dir      string // the checkout
	Name     string // VM name (default: the directory's name)
	Template string // Guix template (default templates.DefaultGuix)
	Force    bool   // overwrite devvm's files
}

// Init writes the Vmfile, dev-vm.scm and channels.scm into a checkout,
// each only where missing unless Force, reusing the project's own
// manifest.scm and channels.scm. devvm keeps nothing else in the checkout.
func Init(ctx context.Context, env *hostenv.Env, ui *backend.UI, opts InitOptions) error {
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return err
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	name := opts.Name
	if name == "" {
		name = vmfile.SanitizeName(filepath.Base(dir))
	}
	tmpl := opts.Template
	if tmpl == "" {
		tmpl = templates.DefaultGuix
	}
	// Decide everything first, then write: a refusal leaves the disk as it was.
	vmText := vmfile.Template(name)
	if _, err := vmfile.Parse(filepath.Join(dir, vmfile.FileName), vmText); err != nil {
		return fmt.Errorf("internal: the Vmfile template does not parse: %w", err)
	}
	manifest, pkgFile := "", ""
	if _, err := os.Stat(filepath.Join(dir, "manifest.scm")); err == nil {
		manifest = "manifest.scm"
		ui.Printf("reusing the project's manifest.scm for the VM's packages")
	} else if _, err := os.Stat(filepath.Join(dir, "guix.scm")); err == nil {
		pkgFile = "guix.scm"
		ui.Printf("reusing the project's guix.scm: the VM gets its package's development inputs")
	}
	config, err := templates.RenderGuix(tmpl, templates.Data{
		HostName: name, User: "dev", UID: guestUID(dir),
		Shares:   []templates.Share{{Tag: "share0", Guest: "/mnt/" + name}},
		Manifest: manifest, PackageFile: pkgFile, Packages: templates.DefaultPackages,
		AuthorizedKeys: state.New(dir, name, env.Dirs()).AuthorizedKeys(),
	})
	if err != nil {
		return err
	}
	files := []struct {
		name string
		data func() ([]byte, string)
	}{
		{vmfile.FileName, func() ([]byte, string) { return vmText, "" }},
		{"dev-vm.scm", func() ([]byte, string) { return config, "from template " + tmpl }},
		{"channels.scm", func() ([]byte, string) { return channelsFor(ctx, env) }},
	}
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		if _, err := os.Stat(path); err == nil && !opts.Force {
			ui.Printf("kept %s (exists; --force overwrites devvm's files)", f.name)
			continue
		}
		data, note := f.data()
		if err := state.WriteFileAtomic(path, data, 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
		if note != "" {
			note = " (" + note + ")"
		}
		ui.Printf("wrote %s%s", f.name, note)
	}
	ui.Printf("next: `devvm doctor` checks this host, `devvm up` builds and boots the VM")
	return nil
}

// guestUID is the uid of the checkout's owner when it is a regular user's,
// so files created over 9p look the same on both sides; else 1000.
func guestUID(dir string) int {
	if st, err := os.Stat(dir); err == nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Uid >= 1000 && sys.Uid < 60000 {
			return int(sys.Uid)
		}
	}
	return 1000
}

// channelsFor pins the channels of the guix on this host (`guix describe
// -f channels`) when that works and is pinned by full commits, else the
// pin shipped with devvm.
func channelsFor(ctx context.Context, env *hostenv.Env) ([]byte, string) {
	if _, err := env.LookPath("guix"); err == nil {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		out, err := env.Command(ctx, "guix", "describe", "-f", "channels").Output()
		if err == nil {
			if chans, perr := guix.ParseChannels(string(out)); perr == nil && len(chans) > 0 && allPinned(chans) {
				return out, "pinned to this host's guix by `guix describe -f channels`"
			}
		}
	}
	return channels.Default, "devvm's default pin, GNU Guix v1.5.0: `guix describe -f channels` gave none"
}

func allPinned(chans []guix.Channel) bool {
	for _, c := range chans {
		if len(c.Commit) != 40 {
			return false
		}
	}
	return true
}
