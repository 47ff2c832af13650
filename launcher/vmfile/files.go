package vmfile

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// CheckFiles reports the first file the Vmfile names that is missing: for
// the guix backend guix.config, guix.channels and guix.manifest (when set),
// and every ssh.authorized_keys entry that is a file rather than a literal
// key. Load does not check these, so commands that do not build or boot
// still work in a half-set-up checkout; call CheckFiles before building.
func (v *Vmfile) CheckFiles() error {
	type file struct{ key, path, hint string }
	var files []file
	if v.Backend == BackendGuix {
		files = append(files,
			file{"guix.config", v.Guix.Config, "run `devvm init` to write one, or point guix.config at your operating-system file"},
			file{"guix.channels", v.Guix.Channels, "write it with `guix describe -f channels > channels.scm`"})
		if v.Guix.Manifest != "" {
			files = append(files, file{"guix.manifest", v.Guix.Manifest, "create it, or set manifest = \"\" for none"})
		}
	}
	for i, k := range v.SSH.AuthorizedKeys {
		if !isLiteralKey(k) {
			files = append(files, file{fmt.Sprintf("ssh.authorized_keys[%d]", i), k, "give an existing public key file or a literal \"ssh-ed25519 AAAA...\" key"})
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
		case st.IsDir():
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
