package project

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/devvm/devvm/launcher/guix"
)

func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, text := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// A project that ships its own VM config, in the shape of qbuf's: its own
// 9p tag at /mnt/workspace, a password user, channels.scm, manifest.scm and
// a guix.scm.
const qbufLike = `;; the project's VM
(use-modules (gnu))
(use-service-modules networking ssh)
(operating-system
  (host-name "qbuf-dev")
  (file-systems (cons* (file-system (mount-point "/") (device "/dev/vda1") (type "ext4"))
                       (file-system
                         (mount-point "/mnt/workspace")
                         (device "qbuf_share")
                         (type "9p")
                         (options "trans=virtio,version=9p2000.L"))
                       (file-system (mount-point "/mnt/ref") (device "ref") (type "9p") (flags '(read-only)))
                       %base-file-systems))
  (users (cons (user-account (name "dev") (group "users") (password (crypt "dev" "$6$x"))) %base-user-accounts)))
`

func TestDetectQbufLike(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, map[string]string{
		"dev-vm.scm":   qbufLike,
		"channels.scm": `(list (channel (name 'guix) (commit "230aa373f315f247852ee07dff34146e9b480aec")))`,
		"manifest.scm": `(specifications->manifest '("gcc-toolchain"))`,
		"guix.scm":     `(use-modules (guix packages)) (package (name "qbuf") (source (local-file "." "qbuf" #:recursive? #t)))`,
	})
	f, err := Detect(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := &Found{Config: "dev-vm.scm", Channels: "channels.scm", Packages: "manifest.scm",
		Shares: []guix.Share{{Tag: "qbuf_share", Guest: "/mnt/workspace"}, {Tag: "ref", Guest: "/mnt/ref", ReadOnly: true}}}
	if !reflect.DeepEqual(f, want) {
		t.Errorf("got %+v\nwant %+v", f, want)
	}
}

func TestDetectAnyOSFile(t *testing.T) {
	dir := t.TempDir()
	// Guix's bare-bones.tmpl style, under another name, defined then named.
	write(t, dir, map[string]string{
		"system/notes.scm":               `(operating-system)`, // not at the top: ignored
		"tools.scm":                      `(define (f x) x) (f 1)`,
		"broken.scm":                     `(operating-system (host-name "x"`,
		"os-b.scm":                       "(use-modules (gnu))\n(define %os (operating-system (host-name \"b\")))\n%os\n",
		"os-a.scm":                       "(use-modules (gnu))\n(operating-system (host-name \"a\"))\n",
		".guix/modules/proj-package.scm": `(define-module (proj-package)) 1`,
		"guix.scm":                       `(operating-system)`, // guix.scm is a package file, never the OS
	})
	f, err := Detect(dir)
	if err != nil {
		t.Fatal(err)
	}
	if f.Config != "os-a.scm" || !reflect.DeepEqual(f.OtherConfigs, []string{"os-b.scm"}) || len(f.Shares) != 0 {
		t.Errorf("got %+v", f)
	}
	if f.Packages != "guix.scm" || !reflect.DeepEqual(f.LoadPath, []string{".guix/modules"}) || f.Channels != "" {
		t.Errorf("got %+v", f)
	}
}

func TestDetectEmpty(t *testing.T) {
	f, err := Detect(t.TempDir())
	if err != nil || !reflect.DeepEqual(f, &Found{}) {
		t.Errorf("%+v %v", f, err)
	}
	if _, err := Detect(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing directory gave no error")
	}
}
