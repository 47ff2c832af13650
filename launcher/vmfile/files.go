package vmfile

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// CheckFiles reports the first file the Vmfile names that is missing: for
// the guix backend guix.config, guix.channels, guix.manifest (when set) and
// the guix.load_path directories, and every ssh.authorized_keys entry that
// is a file rather than a literal key. Load does not check these, so commands that do not build or boot
// still work in a half-set-up checkout; call CheckFiles before building.
func (v *Vmfile) CheckFiles() error {
	type file struct {
		key, path, hint string
		dir             bool
	}
	var files []file
	if v.Backend == BackendGuix {
		files = append(files,
			file{"guix.config", v.Guix.Config, "run `devvm init` to write one, or point guix.config at your operating-system file", false},
			file{"guix.channels", v.Guix.Channels, "write it with `guix describe -f channels > channels.scm`", false})
		if v.Guix.Manifest != "" {
			files = append(files, file{"guix.manifest", v.Guix.Manifest, "create it, or set manifest = \"\" for none", false})
		}
		for i, d := range v.Guix.LoadPath {
			files = append(files, file{fmt.Sprintf("guix.load_path[%d]", i), d, "create it, or remove it from load_path", true})
		}
	}
	for i, k := range v.SSH.AuthorizedKeys {
		if !isLiteralKey(k) {
			files = append(files, file{fmt.Sprintf("ssh.authorized_keys[%d]", i), k, "give an existing public key file or a literal \"ssh-ed25519 AAAA...\" key", false})
		}
	}
	for _, f := range files {
		abs := v.Resolve(f.path)
		st, err := os.Stat(abs)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return v.KeyError(f.key, "%s does not exist: %s", abs, f.hint)
		case err != nil:
			return v.KeyError(f.key, "%v", err)
		case f.dir && !st.IsDir():
			return v.KeyError(f.key, "%s is not a directory: give a directory of Guile modules", abs)
		case !f.dir && st.IsDir():
			return v.KeyError(f.key, "%s is a directory, not a file", abs)
		}
	}
	return nil
}

// isLiteralKey tells a one-line public key ("ssh-ed25519 AAAA... c") from
// a file name.
func isLiteralKey(s string) bool {
	typ, rest, ok := strings.Cut(strings.TrimSpace(s), " ")
	return ok && rest != "" && (strings.HasPrefix(typ, "ssh-") || strings.HasPrefix(typ, "ecdsa-") || strings.HasPrefix(typ, "sk-"))
}
