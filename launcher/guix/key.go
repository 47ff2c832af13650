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
	Config   string // absolute path of the operating-system file
	Channels string // absolute path of channels.scm
	Manifest string // absolute path of manifest.scm, or ""
	// Settings are the Vmfile's build-relevant keys, rendered as text.
	Settings map[string]string
}

// maxInputFiles bounds the files a key hashes (a runaway local-file of a
// huge tree would otherwise make every `up` slow).
const maxInputFiles = 5000

// Key returns the content-addressed build key of in and the files it
// hashed. The key covers devvm's template version, the settings, and the
// content of the config, channels and manifest files and of every local
// file they name (string literals that are paths of existing files or
// directories next to the file naming them, followed into .scm files).
func Key(in Inputs) (string, []string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "devvm-build-key 1\ntemplate-version %s\n", templates.Version)
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
	var add func(path string, role string) error
	add = func(path, role string) error {
		if seen[path] {
			return nil
		}
		seen[path] = true
		if len(files) >= maxInputFiles {
			return fmt.Errorf("more than %d input files under %s: a local-file names a tree that is too large", maxInputFiles, path)
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
						return fmt.Errorf("more than %d input files under %s: a local-file names a tree that is too large", maxInputFiles, path)
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
		if !strings.HasSuffix(path, ".scm") {
			return nil
		}
		for _, ref := range referencedFiles(path) {
			if err := add(ref, "file loaded by "+filepath.Base(path)); err != nil {
				return err
			}
		}
		return nil
	}
	for _, f := range []struct{ path, role string }{
		{in.Config, "config"}, {in.Channels, "channels file"}, {in.Manifest, "manifest"},
	} {
		if f.path == "" {
			continue
		}
		fmt.Fprintf(h, "role %s\n", f.role)
		if err := add(f.path, f.role); err != nil {
			return "", nil, err
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

// referencedFiles lists existing files or directories named by string
// literals of a Scheme file, resolved against the file's directory (how
// local-file, load and include resolve relative names). Unparseable files
// yield nothing: guix itself will report the syntax error.
func referencedFiles(path string) []string {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	data, err := parseSexps(string(src))
	if err != nil {
		return nil
	}
	dir := filepath.Dir(path)
	var out []string
	for _, d := range data {
		d.walk(func(n *node) {
			if !n.isStr || n.str == "" || strings.ContainsAny(n.str, "\n\x00") || len(n.str) > 4096 {
				return
			}
			rel := filepath.Join(dir, n.str)
			if st, err := os.Stat(rel); err == nil && (st.Mode().IsRegular() || st.IsDir()) && rel != dir && !isStore(rel) {
				out = append(out, rel)
				return
			}
			// An absolute name outside the checkout counts only as a
			// regular file: "/etc" in a config must not hash /etc.
			if filepath.IsAbs(n.str) && !isStore(n.str) {
				if st, err := os.Stat(n.str); err == nil && st.Mode().IsRegular() {
					out = append(out, n.str)
				}
			}
		})
	}
	return out
}

func isStore(p string) bool {
	return strings.HasPrefix(p, "/gnu/store/") || p == "/" || strings.HasPrefix(p, "/proc") || strings.HasPrefix(p, "/dev")
}
