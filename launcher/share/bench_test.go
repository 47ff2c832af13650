package share

import (
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/hugelgupf/p9/p9"
)

// BenchmarkSequentialRead reads a 64 MB file through p9's client over a unix
// socket pair; MB/s is reported by the testing package (b.SetBytes).
func BenchmarkSequentialRead(b *testing.B) {
	dir := b.TempDir()
	const size = 64 << 20
	data := make([]byte, size)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(dir, "big"), data, 0o644); err != nil {
		b.Fatal(err)
	}
	for _, msize := range []uint32{64 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("msize=%dK", msize>>10), func(b *testing.B) {
			root := serve(b, dir, Options{ReadOnly: true}, msize)
			buf := make([]byte, msize)
			b.SetBytes(size)
			b.ResetTimer()
			for range b.N {
				_, f, err := root.Walk([]string{"big"})
				if err != nil {
					b.Fatal(err)
				}
				if _, _, err := f.Open(p9.ReadOnly); err != nil {
					b.Fatal(err)
				}
				var off int64
				for {
					n, err := f.ReadAt(buf, off)
					off += int64(n)
					if err == io.EOF || n == 0 {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				if off != size {
					b.Fatalf("read %d bytes, want %d", off, size)
				}
				f.Close()
			}
		})
	}
}

// BenchmarkWalkGetAttrTree walks to and stats every file of a 2000-file tree
// (20 directories of 100 files), one Twalkgetattr per file as the Linux
// client's lookups do.
func BenchmarkWalkGetAttrTree(b *testing.B) {
	dir := b.TempDir()
	var paths [][]string
	for d := range 20 {
		dn := fmt.Sprintf("dir%02d", d)
		if err := os.Mkdir(filepath.Join(dir, dn), 0o755); err != nil {
			b.Fatal(err)
		}
		for f := range 100 {
			fn := fmt.Sprintf("file%03d.go", f)
			if err := os.WriteFile(filepath.Join(dir, dn, fn), []byte("package x\n"), 0o644); err != nil {
				b.Fatal(err)
			}
			paths = append(paths, []string{dn, fn})
		}
	}
	root := serve(b, dir, Options{}, 64<<10)
	b.ResetTimer()
	for range b.N {
		for _, p := range paths {
			_, f, _, attr, err := root.WalkGetAttr(p)
			if err != nil {
				b.Fatal(err)
			}
			if attr.Size != 10 {
				b.Fatalf("%v: size %d", p, attr.Size)
			}
			f.Close()
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(paths)), "ns/file")
}
