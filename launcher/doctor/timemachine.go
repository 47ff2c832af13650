package doctor

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/devvm/devvm/launcher/guix"
	"github.com/devvm/devvm/launcher/vmfile"
)

// inferiorTTL is how long `guix time-machine` keeps a cached channel
// profile after its last use (guix:guix/inferior.scm:893, ttl 30 days; a
// hit touches the entry's mtime, 964-969).
const inferiorTTL = 30 * 24 * time.Hour

// InferiorKey is the name of the time-machine cache entry of a list of
// channel commits: the SHA-256 of the commits concatenated in channel order,
// in lower-case RFC 4648 base32 without padding (guix:guix/inferior.scm:909-916;
// bytevector->base32-string, guix/base32.scm:65-97 and 188-190).
func InferiorKey(commits []string) string {
	sum := sha256.Sum256([]byte(strings.Join(commits, "")))
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:]))
}

// timeMachineCache checks whether `guix time-machine` has the Vmfile's
// pinned channels cached (then a build needs no network to get them) and
// when that entry expires. The cache is %profile-directory/inferiors,
// /var/guix/profiles/per-user/$USER/inferiors in Guix 1.5.0 (commit
// d12c4452a49; guix:guix/profiles.scm:2367-2374).
func timeMachineCache(vf *vmfile.Vmfile, perUser string, now time.Time) Check {
	c := Check{Name: "time-machine-cache"}
	text, err := os.ReadFile(vf.Resolve(vf.Guix.Channels))
	if err != nil {
		c.Detail, c.Fix = "cannot read the channels file: "+err.Error(), "`devvm init` writes a pinned channels.scm"
		return c
	}
	chans, err := guix.ParseChannels(string(text))
	if err != nil || len(chans) == 0 {
		c.Detail, c.Fix = fmt.Sprintf("cannot read the channels of %s: %v", vf.Guix.Channels, err), "pin every channel by a full commit (`guix describe -f channels`)"
		return c
	}
	var commits []string
	for _, ch := range chans {
		commits = append(commits, ch.Commit)
	}
	if vf.Guix.DisableAuthentication {
		c.OK = true
		c.Detail = "disable_authentication = true: guix caches no time-machine profile for channels it does not authenticate (guix:guix/inferior.scm:985-994), so every build resolves them again (offline only while their commits are in ~/.cache/guix/checkouts)"
		return c
	}
	entry := filepath.Join(perUser, "inferiors", InferiorKey(commits))
	st, err := os.Lstat(entry)
	if err != nil {
		c.Detail = "the pinned channels are not cached yet (" + entry + "): the first build fetches them and builds their guix, which needs the network"
		c.Fix = "run `devvm build` once while online; after that builds of this pin work offline"
		return c
	}
	expires := st.ModTime().Add(inferiorTTL)
	c.OK = true
	if now.After(expires) {
		c.OK = false
		c.Detail = fmt.Sprintf("the cached channels (%s) expired on %s: the next `guix gc` may remove them, and a build then needs the network", entry, expires.Format("2006-01-02"))
		c.Fix = "run `devvm build` while online to use (and so renew) the entry"
		return c
	}
	c.Detail = fmt.Sprintf("the pinned channels are cached (offline-ready); last used %s, the entry expires %s unless a build uses it again", st.ModTime().Format("2006-01-02"), expires.Format("2006-01-02"))
	return c
}
