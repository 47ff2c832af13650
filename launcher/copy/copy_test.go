package copy

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/devvm/devvm/launcher/sshx"
	"github.com/devvm/devvm/launcher/sshx/sshtest"
)

// connect starts an in-process sshd (it runs commands with the real
// /bin/sh and tar of this host, standing in for the guest's) and returns a
// client verified against the pinned host key, as devvm connects.
func connect(t *testing.T) *sshx.Client {
	t.Helper()
	srv := sshtest.Start(t, sshtest.Options{})
	dir := t.TempDir()
	key, err := sshx.EnsureUserKey(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	srv.Authorize(key.Signer.PublicKey())
	tg := sshx.Target{Addr: srv.Addr, User: "tester", Key: key, KnownHosts: filepath.Join(dir, "known_hosts"), HostKeyAlias: "devvm-x"}
	ctx := testCtx(t)
	if _, err := sshx.Pin(ctx, tg); err != nil {
		t.Fatal(err)
	}
	c, err := sshx.Dial(ctx, tg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// tars are the guest tars to test against: GNU tar (Guix System) and
// busybox tar (the e2e test guest).
func tars(t *testing.T) map[string]string {
	out := map[string]string{}
	if _, err := exec.LookPath("tar"); err == nil {
		out["gnu"] = "tar"
	}
	if p, err := exec.LookPath("busybox"); err == nil {
		out["busybox"] = p + " tar"
	}
	if len(out) == 0 {
		t.Skip("neither tar nor busybox is installed")
	}
	return out
}

func sum(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// tree makes a directory with nested files, an empty directory, a long
// name, an executable and a relative link.
func tree(t *testing.T, root string) {
	t.Helper()
	long := strings.Repeat("n", 120)
	for p, data := range map[string]string{
		"a.txt": "alpha\n", "sub/b.txt": "beta\n", "sub/deeper/" + long: "long name\n", "run.sh": "#!/bin/sh\necho hi\n",
	} {
		os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755)
		if err := os.WriteFile(filepath.Join(root, p), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(root, "run.sh"), 0o755)
	os.Mkdir(filepath.Join(root, "empty"), 0o755)
	if err := os.Symlink("sub/b.txt", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
}

// sameTree compares two trees: names, types, contents, modes and links.
func sameTree(t *testing.T, a, b string) {
	t.Helper()
	list := func(root string) map[string]string {
		m := map[string]string{}
		filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
			if err != nil {
				t.Fatal(err)
			}
			rel, _ := filepath.Rel(root, p)
			switch {
			case info.Mode()&os.ModeSymlink != 0:
				l, _ := os.Readlink(p)
				m[rel] = "link " + l
			case info.IsDir():
				m[rel] = "dir"
			default:
				data, _ := os.ReadFile(p)
				m[rel] = info.Mode().Perm().String() + " " + string(data)
			}
			return nil
		})
		return m
	}
	ma, mb := list(a), list(b)
	if len(ma) != len(mb) {
		t.Errorf("trees differ: %v\n%v", ma, mb)
	}
	for k, v := range ma {
		if mb[k] != v {
			t.Errorf("%s: %q in %s, %q in %s", k, v, a, mb[k], b)
		}
	}
}

func TestFileBothWays(t *testing.T) {
	for kind, tarCmd := range tars(t) {
		t.Run(kind, func(t *testing.T) {
			c := connect(t)
			ctx := testCtx(t)
			host, guest := t.TempDir(), t.TempDir()
			src := filepath.Join(host, "big.bin")
			data := make([]byte, 3<<20+17)
			rand.Read(data)
			os.WriteFile(src, data, 0o640)
			o := Options{Tar: tarCmd}
			// Into an existing directory: it goes inside.
			if err := Upload(ctx, c, src, guest, o); err != nil {
				t.Fatal(err)
			}
			if sum(t, filepath.Join(guest, "big.bin")) != sha256.Sum256(data) {
				t.Fatal("uploaded file differs")
			}
			// To a new name.
			if err := Upload(ctx, c, src, filepath.Join(guest, "renamed"), o); err != nil {
				t.Fatal(err)
			}
			if st, err := os.Stat(filepath.Join(guest, "renamed")); err != nil || st.Size() != int64(len(data)) || st.Mode().Perm() != 0o640 {
				t.Fatalf("renamed upload: %v %v", st, err)
			}
			back := filepath.Join(host, "back.bin")
			if err := Download(ctx, c, filepath.Join(guest, "renamed"), back, o); err != nil {
				t.Fatal(err)
			}
			if sum(t, back) != sha256.Sum256(data) {
				t.Fatal("downloaded file differs")
			}
			// Overwrite an existing file.
			os.WriteFile(back, []byte("old"), 0o644)
			if err := Download(ctx, c, filepath.Join(guest, "renamed"), back, o); err != nil || sum(t, back) != sha256.Sum256(data) {
				t.Fatalf("download over an existing file: %v", err)
			}
		})
	}
}

func TestTreeBothWays(t *testing.T) {
	for kind, tarCmd := range tars(t) {
		t.Run(kind, func(t *testing.T) {
			c := connect(t)
			ctx := testCtx(t)
			host, guest := t.TempDir(), t.TempDir()
			src := filepath.Join(host, "proj")
			tree(t, src)
			o := Options{Tar: tarCmd}
			if err := Upload(ctx, c, src, guest+"/", o); err != nil {
				t.Fatal(err)
			}
			sameTree(t, src, filepath.Join(guest, "proj"))
			// A new destination becomes the copy.
			if err := Download(ctx, c, filepath.Join(guest, "proj"), filepath.Join(host, "copy"), o); err != nil {
				t.Fatal(err)
			}
			sameTree(t, src, filepath.Join(host, "copy"))
			// An existing destination directory gets it inside.
			if err := Download(ctx, c, filepath.Join(guest, "proj"), filepath.Join(host, "copy"), o); err != nil {
				t.Fatal(err)
			}
			sameTree(t, src, filepath.Join(host, "copy", "proj"))
		})
	}
}

func TestDestinationErrors(t *testing.T) {
	c := connect(t)
	ctx := testCtx(t)
	host, guest := t.TempDir(), t.TempDir()
	f := filepath.Join(host, "f")
	os.WriteFile(f, []byte("x"), 0o644)
	for name, err := range map[string]error{
		"missing source":          Upload(ctx, c, filepath.Join(host, "nope"), guest, Options{}),
		"slash on a new path":     Upload(ctx, c, f, filepath.Join(guest, "new")+"/", Options{}),
		"missing guest directory": Upload(ctx, c, f, filepath.Join(guest, "no", "such"), Options{}),
		"missing guest file":      Download(ctx, c, filepath.Join(guest, "nope"), host, Options{}),
		"directory onto a file":   Download(ctx, c, guest, f, Options{}),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := os.Stat(filepath.Join(guest, "new")); err == nil {
		t.Error("a refused upload created the destination")
	}
}

// hostile builds a guest archive with the given entries.
func hostile(t *testing.T, hs ...*tar.Header) *bytes.Buffer {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range hs {
		if h.Typeflag == tar.TypeReg {
			h.Size = 4
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte("evil"))
		}
	}
	tw.Close()
	return &b
}

// The guest is untrusted: its archive cannot write outside the
// destination, nor through a link it planted (or one already there).
func TestExtractRefusesEscapes(t *testing.T) {
	outside := t.TempDir()
	cases := map[string][]*tar.Header{
		"dot-dot":   {{Name: "top/", Typeflag: tar.TypeDir, Mode: 0o755}, {Name: "top/../../escape", Typeflag: tar.TypeReg, Mode: 0o644}},
		"absolute":  {{Name: "/etc/escape", Typeflag: tar.TypeReg, Mode: 0o644}},
		"other top": {{Name: "top/", Typeflag: tar.TypeDir, Mode: 0o755}, {Name: "elsewhere/x", Typeflag: tar.TypeReg, Mode: 0o644}},
		"through a link": {{Name: "top/", Typeflag: tar.TypeDir, Mode: 0o755},
			{Name: "top/l", Typeflag: tar.TypeSymlink, Linkname: outside}, {Name: "top/l/escape", Typeflag: tar.TypeReg, Mode: 0o644}},
		"hard link outside": {{Name: "top/", Typeflag: tar.TypeDir, Mode: 0o755}, {Name: "top/h", Typeflag: tar.TypeLink, Linkname: "/etc/passwd"}},
	}
	for name, hs := range cases {
		t.Run(name, func(t *testing.T) {
			dst := t.TempDir()
			if err := extract(hostile(t, hs...), dst, "top", "top", Options{}); err == nil {
				t.Error("accepted")
			}
			if _, err := os.Stat(filepath.Join(outside, "escape")); err == nil {
				t.Fatal("the archive wrote outside the destination")
			}
		})
	}
	// A link already at a file's place is replaced, not written through.
	dst := t.TempDir()
	victim := filepath.Join(outside, "victim")
	os.WriteFile(victim, []byte("safe"), 0o644)
	os.Symlink(victim, filepath.Join(dst, "top"))
	if err := extract(hostile(t, &tar.Header{Name: "top", Typeflag: tar.TypeReg, Mode: 0o644}), dst, "top", "top", Options{}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "safe" {
		t.Errorf("written through a link: victim has %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "top")); string(b) != "evil" {
		t.Errorf("the file was not written: %q", b)
	}
}

// A failing extraction ends the guest's tar instead of hanging on it.
func TestDownloadStopsOnBadArchive(t *testing.T) {
	c := connect(t)
	ctx := testCtx(t)
	guest := t.TempDir()
	src := filepath.Join(guest, "top")
	os.Mkdir(src, 0o755)
	big := make([]byte, 8<<20)
	rand.Read(big)
	os.WriteFile(filepath.Join(src, "big"), big, 0o644)
	// The host already has a directory where the file goes.
	host := t.TempDir()
	os.MkdirAll(filepath.Join(host, "top", "big"), 0o755)
	err := Download(ctx, c, src, host, Options{})
	if err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("download onto a directory in the way: %v", err)
	}
}
