package doctor

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/vmfile"
	"golang.org/x/sys/unix"
)

func TestDoctor(t *testing.T) {
	env := hostenv.FromOS()
	env.StateDir, env.RuntimeDir = filepath.Join(t.TempDir(), "state"), filepath.Join(t.TempDir(), "rt")
	env.LookPath = func(string) (string, error) { return "", exec.ErrNotFound }
	env.KVMDevice = filepath.Join(t.TempDir(), "no-kvm")
	checks := Run(context.Background(), env, t.TempDir(), nil, os.ErrNotExist)
	byName := map[string]Check{}
	for _, c := range checks {
		byName[c.Name] = c
		if !c.OK && c.Fix == "" {
			t.Errorf("%s fails without a fix hint", c.Name)
		}
	}
	for _, name := range []string{"vmfile", "guix"} {
		if c := byName[name]; c.OK || !c.Required {
			t.Errorf("%s: %+v, want a required failure", name, c)
		}
	}
	if c := byName["kvm"]; c.OK || c.Required || !strings.Contains(c.Detail, "TCG") {
		t.Errorf("kvm: %+v", c)
	}
}

// TestInferiorKey: the cache entry names Guix 1.5.0 itself computes for
// these commit lists (its own pin; two channels), printed by the real guile
// of the real-Guix tier's chroot with (guix base32) and (gcrypt hash):
// (bytevector->base32-string (sha256 (string->utf8 COMMITS))).
func TestInferiorKey(t *testing.T) {
	for _, c := range []struct {
		commits []string
		want    string
	}{
		{[]string{"230aa373f315f247852ee07dff34146e9b480aec"}, "xq64fz3gpvnyljkvyoc4tqc4vsoxcoipkx45jlrijiqamuhlzy5q"},
		{[]string{"230aa373f315f247852ee07dff34146e9b480aec", "0123456789abcdef0123456789abcdef01234567"}, "5yhokhfcvgouzldylbzfdyj5lwinrfzlmzyk4gsqw7dxd27bft7q"},
	} {
		if got := InferiorKey(c.commits); got != c.want {
			t.Errorf("InferiorKey(%v) = %s, want %s", c.commits, got, c.want)
		}
	}
}

// TestTimeMachineCache: cached, expired, and not yet cached pins.
func TestTimeMachineCache(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "channels.scm"), []byte(`(list (channel (name 'guix) (url "https://git.guix.gnu.org/guix.git") (commit "230aa373f315f247852ee07dff34146e9b480aec")))`), 0o644)
	vf := vmfile.Default(dir)
	perUser := t.TempDir()
	now := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	if c := timeMachineCache(vf, perUser, now); c.OK || !strings.Contains(c.Detail, "not cached") || c.Fix == "" {
		t.Errorf("no cache entry: %+v", c)
	}
	entry := filepath.Join(perUser, "inferiors", "xq64fz3gpvnyljkvyoc4tqc4vsoxcoipkx45jlrijiqamuhlzy5q")
	os.MkdirAll(filepath.Dir(entry), 0o755)
	os.Symlink("/gnu/store/x-profile", entry)
	used := now.Add(-10 * 24 * time.Hour)
	unix.Lutimes(entry, []unix.Timeval{unix.NsecToTimeval(used.UnixNano()), unix.NsecToTimeval(used.UnixNano())})
	if c := timeMachineCache(vf, perUser, now); !c.OK || !strings.Contains(c.Detail, "offline-ready") || !strings.Contains(c.Detail, "expires 2026-12-23") {
		t.Errorf("cached entry: %+v", c)
	}
	if c := timeMachineCache(vf, perUser, now.Add(25*24*time.Hour)); c.OK || !strings.Contains(c.Detail, "expired") {
		t.Errorf("expired entry: %+v", c)
	}
	vf.Guix.DisableAuthentication = true
	if c := timeMachineCache(vf, perUser, now); !strings.Contains(c.Detail, "caches no time-machine profile") {
		t.Errorf("unauthenticated channels: %+v", c)
	}
}
