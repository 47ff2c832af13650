package guix

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/devvm/devvm/templates"
)

// Inputs are what a VM build depends on.
type Inputs struct {
	Config   string // absolute path of the project's operating-system file
	Channels string // absolute path of channels.scm
	Manifest string // absolute path of the packages file (manifest.scm or guix.scm), or ""
	// Wrapper is the generated wrapper (WriteWrapper); its text carries the
	// contract (user, keys file, shares) and is hashed as it is.
	Wrapper string
	// LoadPath are the -L directories: the modules in them (*.scm) and the
	// files those name are inputs.
	LoadPath []string
	// Settings are the Vmfile's build-relevant keys, rendered as text.
	Settings map[string]string
}

// maxInputFiles bounds the files a key hashes (a runaway local-file of a
// huge tree would otherwise make every `up` slow).
const maxInputFiles = 5000

// Key returns the content-addressed build key of in and the files it
// hashed. The key covers devvm's template version, the settings, the
// wrapper, and the content of the config, channels and packages files, of
// the load path's modules, and of every local file they name (string
// literals that are paths of existing files or directories next to the
// file naming them, followed into .scm files).
//
// It leaves out what cannot change the VM's derivation: the project's
// source. A directory named by the packages file or a module (guix.scm's
// `(local-file "." … #:recursive? #t)`, the manual's `"../.."`) is the
// package's source, and the VM only gets the package's inputs
// (package->development-manifest); a directory named by the OS config is
// hashed unless it holds the config itself (the checkout or a parent).
func Key(in Inputs) (string, []string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "devvm-build-key 2\ntemplate-version %s\n", templates.Version)
	keys := make([]string, 0, len(in.Settings))
	for k := range in.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "setting %q %q\n", k, in.Settings[k])
	}
	seen := map[string]bool{}
	var files []string
	tooMany := func(under string) error {
		return fmt.Errorf("more than %d input files under %s: a local-file names a tree that is too large", maxInputFiles, under)
	}
	var add func(path, role string, dirs, follow bool) error
	// add hashes path; dirs: directories it names are inputs; follow: read
	// the string literals of .scm files.
	add = func(path, role string, dirs, follow bool) error {
		if seen[path] {
			return nil
		}
		seen[path] = true
		if len(files) >= maxInputFiles {
			return tooMany(path)
		}
		st, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("%s %s: %w", role, path, err)
		}
		if st.IsDir() {
			return filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if d.IsDir() && (d.Name() == ".git" || d.Name() == ".devvm") {
					return filepath.SkipDir
				}
				if d.Type().IsRegular() {
					if len(files) >= maxInputFiles {
						return tooMany(path)
					}
					files = append(files, p)
					return hashFile(h, p)
				}
				return nil
			})
		}
		files = append(files, path)
		if err := hashFile(h, path); err != nil {
			return err
		}
		if !follow || !strings.HasSuffix(path, ".scm") {
			return nil
		}
		for _, ref := range referencedFiles(path, dirs) {
			if err := add(ref, "file loaded by "+filepath.Base(path), dirs, true); err != nil {
				return err
			}
		}
		return nil
	}
	for _, f := range []struct {
		path, role   string
		dirs, follow bool
	}{
		{in.Config, "config", true, true}, {in.Channels, "channels file", false, true},
		{in.Manifest, "manifest", false, true}, {in.Wrapper, "wrapper", false, false},
	} {
		if f.path == "" {
			continue
		}
		fmt.Fprintf(h, "role %s\n", f.role)
		if err := add(f.path, f.role, f.dirs, f.follow); err != nil {
			return "", nil, err
		}
	}
	for _, dir := range in.LoadPath {
		fmt.Fprintf(h, "load-path %q\n", dir)
		var mods []string
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && (d.Name() == ".git" || d.Name() == ".devvm") {
				return filepath.SkipDir
			}
			if d.Type().IsRegular() && strings.HasSuffix(p, ".scm") {
				if len(mods) >= maxInputFiles {
					return tooMany(dir)
				}
				mods = append(mods, p)
			}
			return nil
		})
		if err != nil {
			return "", nil, fmt.Errorf("[guix] load_path %s: %w", dir, err)
		}
		for _, m := range mods {
			if err := add(m, "module", false, true); err != nil {
				return "", nil, err
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)), files, nil
}

func hashFile(h io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fh := sha256.New()
	if _, err := io.Copy(fh, f); err != nil {
		return err
	}
	fmt.Fprintf(h, "file %q %x\n", filepath.Base(path), fh.Sum(nil))
	return nil
}

// referencedFiles lists existing files (and, with dirs, directories that
// do not hold path itself) named by string literals of a Scheme file,
// resolved against the file's real directory (how Guile resolves load,
// include and local-file for a file loaded through a symlink). Unparseable
// files yield nothing: guix itself will report the syntax error.
func referencedFiles(path string, dirs bool) []string {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	data, err := parseSexps(string(src))
	if err != nil {
		return nil
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		real = path
	}
	dir := filepath.Dir(real)
	var out []string
	for _, d := range data {
		d.walk(func(n *node) {
			if !n.isStr || n.str == "" || strings.ContainsAny(n.str, "\n\x00") || len(n.str) > 4096 {
				return
			}
			rel := filepath.Join(dir, n.str)
			if filepath.IsAbs(n.str) {
				rel = filepath.Clean(n.str)
			}
			st, err := os.Stat(rel)
			switch {
			case err != nil || isStore(rel):
			case st.Mode().IsRegular():
				out = append(out, rel)
			case st.IsDir() && dirs && !filepath.IsAbs(n.str) && !within(dir, rel):
				// An absolute directory ("/etc") is never an input; a
				// relative one holding this file is the checkout.
				out = append(out, rel)
			}
		})
	}
	return out
}

// within reports whether path is dir or inside it.
func within(path, dir string) bool {
	r, err := filepath.Rel(dir, path)
	return err == nil && r != ".." && !strings.HasPrefix(r, ".."+string(filepath.Separator))
}

func isStore(p string) bool {
	return strings.HasPrefix(p, "/gnu/store/") || p == "/" || strings.HasPrefix(p, "/proc") || strings.HasPrefix(p, "/dev")
}
