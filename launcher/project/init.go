// Package project reads and writes a checkout's own files: `devvm init`.
package project

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
// each only where missing unless Force. It adopts the project's own Guix
// files (Detect): an existing operating-system file becomes [guix] config,
// its 9p mounts the Vmfile's shares, its channels.scm is kept, and its
// manifest.scm or guix.scm gives the VM's packages. Adopted files are never
// rewritten, not even by Force: devvm applies its contract at build time
// (guix.WriteWrapper). devvm keeps nothing else in the checkout.
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
	found, err := Detect(dir)
	if err != nil {
		return err
	}
	// Decide everything first, then write: a refusal leaves the disk as it was.
	vmText, notes, err := adoptVmfile(dir, name, found)
	if err != nil {
		return err
	}
	data := templates.Data{HostName: name, Packages: templates.DefaultPackages}
	if found.Packages != "" {
		data.Packages = nil
	}
	config, err := templates.RenderGuix(tmpl, data)
	if err != nil {
		return err
	}
	files := []struct {
		name string
		data func() ([]byte, string)
	}{
		{vmfile.FileName, func() ([]byte, string) { return vmText, "" }},
		{"channels.scm", func() ([]byte, string) { return channelsFor(ctx, env) }},
	}
	if found.Config == "" {
		files = append(files, struct {
			name string
			data func() ([]byte, string)
		}{"dev-vm.scm", func() ([]byte, string) { return config, "from template " + tmpl }})
	}
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		if _, err := os.Stat(path); err == nil && (!opts.Force || f.name == found.Channels) {
			how := "exists; --force overwrites devvm's files"
			if f.name == found.Channels {
				how = "the project's pin"
				if err := guix.CheckPinned(path); err != nil {
					ui.Printf("warning: %v", err)
				}
			}
			ui.Printf("kept %s (%s)", f.name, how)
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
	for _, n := range notes {
		ui.Printf("%s", n)
	}
	ui.Printf("next: `devvm doctor` checks this host, `devvm up` builds and boots the VM")
	return nil
}

// adoptVmfile returns the Vmfile init writes for what the checkout has,
// and what to tell the user about it.
func adoptVmfile(dir, name string, found *Found) ([]byte, []string, error) {
	text := string(vmfile.Template(name))
	var notes []string
	set := func(old, new string) error {
		if !strings.Contains(text, old) {
			return fmt.Errorf("internal: the Vmfile template has no line %q to adopt the project's files", old)
		}
		text = strings.Replace(text, old, new, 1)
		return nil
	}
	q := strconv.Quote
	if found.Config != "" {
		if err := set("# config = \"dev-vm.scm\"\n", "config = "+q(found.Config)+"\n"); err != nil {
			return nil, nil, err
		}
		notes = append(notes, fmt.Sprintf("adopted the project's %s as [guix] config: devvm loads it unchanged and adds its user, keys and shares at every build", found.Config))
		if len(found.OtherConfigs) > 0 {
			notes = append(notes, fmt.Sprintf("other operating-system files, not used: %s (set [guix] config to pick one)", strings.Join(found.OtherConfigs, ", ")))
		}
	}
	if len(found.Shares) > 0 {
		s := found.Shares[0]
		if err := set("guest = "+q("/mnt/"+name)+"\n", "guest = "+q(s.Guest)+"\n"); err != nil {
			return nil, nil, err
		}
		if err := set("tag = \"share0\"\n", "tag = "+q(s.Tag)+"\n"); err != nil {
			return nil, nil, err
		}
		if s.ReadOnly {
			if err := set("# readonly = false\n", "readonly = true\n"); err != nil {
				return nil, nil, err
			}
		}
		notes = append(notes, fmt.Sprintf("the checkout is shared at %s with the 9p tag %q, as %s mounts it", s.Guest, s.Tag, found.Config))
		for _, o := range found.Shares[1:] {
			notes = append(notes, fmt.Sprintf("%s also mounts the 9p tag %q at %s: add a [[share]] with host = \"<dir>\", guest = %q, tag = %q to the Vmfile to serve it (until then it stays unmounted)",
				found.Config, o.Tag, o.Guest, o.Guest, o.Tag))
		}
	}
	if found.Packages == "guix.scm" {
		if err := set("# manifest = \"manifest.scm\"\n", "manifest = \"guix.scm\"\n"); err != nil {
			return nil, nil, err
		}
	}
	if found.Packages != "" {
		notes = append(notes, fmt.Sprintf("the VM gets the packages of the project's %s, as `guix shell` would", found.Packages))
	}
	if len(found.LoadPath) > 0 {
		line := "load_path = [" + q(found.LoadPath[0]) + "]\n"
		try := strings.Replace(text, "# build_timeout = \"60m\"\n", "# build_timeout = \"60m\"\n"+line, 1)
		if _, err := vmfile.Parse(filepath.Join(dir, vmfile.FileName), []byte(try)); err == nil {
			text = try
			notes = append(notes, fmt.Sprintf("guix gets -L %s (the project's modules)", found.LoadPath[0]))
		} else {
			notes = append(notes, fmt.Sprintf("the project has %s: if its manifest uses modules from there, add [guix] load_path = [%q]", found.LoadPath[0], found.LoadPath[0]))
		}
	}
	vf, err := vmfile.Parse(filepath.Join(dir, vmfile.FileName), []byte(text))
	if err != nil {
		return nil, nil, fmt.Errorf("internal: the Vmfile init would write does not parse: %w", err)
	}
	if found.Config != "" && vf.Guix.Config != found.Config || len(found.Shares) > 0 && vf.Shares[0].Tag != found.Shares[0].Tag {
		return nil, nil, fmt.Errorf("internal: the Vmfile init would write does not adopt %s", found.Config)
	}
	return []byte(text), notes, nil
}

// GuestUID is the uid of the checkout's owner when it is a regular user's,
// so files created over 9p look the same on both sides; else 1000.
func GuestUID(dir string) int {
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
