package share

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hugelgupf/p9/p9"
)

// FuzzWalkNames drives walk/create/mkdir/symlink/rename/link/setattr with
// arbitrary names and symlink targets, including symlinks swapped in on the
// host after a walk, and checks that nothing outside the root changed.
func FuzzWalkNames(f *testing.F) {
	f.Add("a", "b", "../outside")
	f.Add("..", ".", "/")
	f.Add("x/y", "", "../../../../outside/secret")
	f.Add("link", "dir", "/tmp")
	f.Fuzz(func(t *testing.T, a, b, target string) {
		l := newLayout(t)
		absOutside := l.outside
		root := serve(t, l.root, Options{}, 16<<10)

		_, dir, err := root.Walk(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer dir.Close()

		// Client-side operations with raw names.
		root.Symlink(target, a, p9.NoUID, p9.NoGID)
		root.Symlink(absOutside, b, p9.NoUID, p9.NoGID)
		root.Mkdir(b, 0o755, p9.NoUID, p9.NoGID)
		if nf, _, _, err := dir.Create(a, p9.ReadWrite, 0o644, p9.NoUID, p9.NoGID); err == nil {
			nf.WriteAt([]byte("data"), 0)
			nf.Close()
		}
		for _, names := range [][]string{{a}, {b}, {a, b}, {b, a}, {b, "secret"}, {a, "secret"}} {
			_, wf, err := root.Walk(names)
			if err != nil {
				continue
			}
			wf.SetAttr(p9.SetAttrMask{Size: true}, p9.SetAttr{Size: 0})
			wf.SetAttr(p9.SetAttrMask{Permissions: true, MTime: true}, p9.SetAttr{Permissions: 0o777})
			root.Link(wf, a+"-hl")
			wf.Create(a, p9.ReadWrite, 0o644, p9.NoUID, p9.NoGID)
			wf.Close()
		}
		root.RenameAt(a, root, b)

		// Host-side swap: a walked directory replaced by a symlink to target.
		if validName(b) == nil {
			os.RemoveAll(filepath.Join(l.root, b))
			if err := os.Mkdir(filepath.Join(l.root, b), 0o755); err == nil {
				_, d, err := root.Walk([]string{b})
				if err == nil {
					os.Remove(filepath.Join(l.root, b))
					os.Symlink(target, filepath.Join(l.root, b))
					if nf, _, _, err := d.Create("c", p9.ReadWrite, 0o644, p9.NoUID, p9.NoGID); err == nil {
						nf.WriteAt([]byte("x"), 0)
						nf.Close()
					}
					d.Mkdir(a, 0o755, p9.NoUID, p9.NoGID)
					d.Symlink(target, "s", p9.NoUID, p9.NoGID)
					d.UnlinkAt("secret", 0)
					d.RenameAt("secret", root, "stolen")
					root.RenameAt(a, d, "secret")
					if _, sf, err := d.Walk([]string{"secret"}); err == nil {
						sf.SetAttr(p9.SetAttrMask{Size: true}, p9.SetAttr{Size: 0})
						sf.Close()
					}
					d.Close()
				}
			}
		}
		l.checkOutside(t)
	})
}
