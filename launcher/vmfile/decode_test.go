package vmfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

// Every key and table is found on the line that sets or opens it, whatever
// TOML form writes it: dotted keys, quoted keys, inline tables over several
// lines (TOML 1.1), arrays of tables, strings that look like keys.
func TestLines(t *testing.T) {
	dir := t.TempDir()
	doc := `# comment [[share]]
name = "x" # [ssh]
guix.command = """\
[[share]] \
guest = "/bad path" \
"""
"guix" . config = 'c.scm'
[[share]]
guest = "/mnt/a"
tag = 'a'
[[share]]
guest = "/mnt/b"
tag = "b"
[microvm]
machines.vm1 = { address = "10.1.0.2",
  # TOML 1.1: newlines and comments in inline tables
  port = 2222, }
[microvm.machines."vm_2"]
address = "10.1.0.3"
[ssh]
authorized_keys = [
  "ssh-ed25519 AAAA a",
  "ssh-ed25519 AAAA b",
]
[[forward]]
host = 8080
guest = 80
`
	v, err := parseIn(t, dir, doc)
	if err != nil {
		t.Fatal(err)
	}
	for k, line := range map[string]int{
		"name":                            2,
		"guix":                            3,
		"guix.command":                    3,
		"guix.config":                     7,
		"share":                           8,
		"share[0]":                        8,
		"share[0].guest":                  9,
		"share[1]":                        11,
		"share[1].tag":                    13,
		"microvm":                         14,
		"microvm.machines":                15,
		"microvm.machines.vm1":            15,
		"microvm.machines.vm1.address":    15,
		"microvm.machines.vm1.port":       17,
		`microvm.machines.vm_2`:           18,
		`microvm.machines.vm_2.address`:   19,
		"ssh.authorized_keys":             21,
		"ssh.authorized_keys[1]":          23,
		"forward[0].guest":                27,
		"share[2]":                        0,
		"cpus":                            0,
		"microvm.machines.vm1.config":     0,
		"microvm.machines.vm_2.config":    0,
		"ssh.authorized_keys[2]":          0,
		"forward[0].bind":                 0,
		`microvm.machines."vm_2".address`: 0,
	} {
		if got := v.KeyError(k, "x").Line; got != line {
			t.Errorf("line of %s = %d, want %d", k, got, line)
		}
	}
	if v.Guix.Command != "[[share]] guest = \"/bad path\" " || v.Guix.Config != "c.scm" || v.MicroVM.Machines["vm1"].Port != 2222 {
		t.Errorf("decoded guix %+v, vm1 %+v", v.Guix, v.MicroVM.Machines["vm1"])
	}
}

// TOML's rules for defining keys and tables once, against go-toml/v2's own
// decoder: the documents it accepts parse, the ones it refuses are refused
// as invalid TOML.
func TestTOMLRules(t *testing.T) {
	dir := t.TempDir()
	for _, doc := range []string{
		"[microvm.remote]\ndestination = \"h\"\ncheckout = \"/r\"\n[microvm]\nflake = \".\"\n",
		"[microvm.machines.vm1]\naddress = \"10.1.0.2\"\n[microvm.machines]\n",
		"[microvm]\nmachines.vm1.address = \"10.1.0.2\"\nmachines.vm2.address = \"10.1.0.3\"\n",
		"[microvm]\nmachines.vm1.address = \"10.1.0.2\"\n[microvm.machines.vm2]\naddress = \"10.1.0.3\"\n",
		"microvm.machines.vm1 = {address = \"10.1.0.2\", user = \"root\"}\n",
		"ssh = {port = 2222, authorized_keys = []}\n",
		"share = [{guest = \"/mnt/a\", tag = \"a\"}, {guest = \"/mnt/b\", tag = \"b\"}]\n",
		"forward = []\nssh.port = 2222\nssh.user = \"dev\"\n",
		"[ssh]\n[guix]\n[[share]]\n[[share]]\nguest = \"/mnt/b\"\n[[forward]]\nhost = 8080\nguest = 80\n",
		"cpus = 0x10\nmemory = 4_096\n",
	} {
		if err := toml.Unmarshal([]byte(doc), new(map[string]any)); err != nil {
			t.Fatalf("go-toml refuses %q: %v", doc, err)
		}
		if _, err := parseIn(t, dir, doc); err != nil {
			t.Errorf("%q: %v", doc, err)
		}
	}
	for _, doc := range []string{
		"[ssh]\n[ssh]\n",
		"ssh.port = 2222\n[ssh]\n",
		"[microvm.remote]\n[microvm]\nremote.checkout = \"/r\"\n",
		"[microvm]\nremote.checkout = \"/r\"\n[microvm.remote]\n",
		"ssh = {port = 2222}\nssh.user = \"x\"\n",
		"ssh = {port = 2222}\n[ssh]\n",
		"ssh = {port = 2222, port = 2}\n",
		"ssh = {a.b = 1, a = 2}\n",
		"share = []\n[[share]]\n",
		"[[share]]\n[share]\n",
		"[share]\n[[share]]\n",
		"cpus = 1\ncpus = 1\n",
		"microvm.machines.vm1 = {address = \"x\"}\n[microvm.machines.vm1]\n",
		"[microvm.machines.vm1]\n[microvm]\nmachines.vm1.port = 1\n",
	} {
		if toml.Unmarshal([]byte(doc), new(map[string]any)) == nil {
			t.Fatalf("go-toml accepts %q", doc)
		}
		_, err := parseIn(t, dir, doc)
		var e *Error
		if !errors.As(err, &e) || e.Line == 0 {
			t.Errorf("%q: %v, want an error with a line", doc, err)
		}
	}
}

func TestSizeCap(t *testing.T) {
	dir := t.TempDir()
	big := make([]byte, MaxFileSize+1)
	for i := range big {
		big[i] = '\n'
	}
	_, err := parseIn(t, dir, string(big))
	want := filepath.Join(dir, FileName) + ": the file is 262145 bytes, more than the 262144 (256 KiB) devvm reads"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Parse of the cap + 1: %v, want %q", err, want)
	}
	if _, err := parseIn(t, dir, string(big[:MaxFileSize])); err != nil {
		t.Errorf("Parse of the cap in newlines: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, FileName), big, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Load of the cap + 1: %v, want %q", err, want)
	}
}

// A FIFO or device in place of a Vmfile is refused, not read (which
// would block or never end).
func TestNotRegular(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, FileName), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "is not a regular file") {
		t.Errorf("Load of a FIFO: %v", err)
	}
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", filepath.Join(dir, LocalFileName)); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), LocalFileName+": is not a regular file") {
		t.Errorf("Load with Vmfile.local -> /dev/zero: %v", err)
	}
}

// nested returns about n bytes of arrays nested as deep as the parser
// takes (10000), repeated under one key each: the input that made the
// old line scanner quadratic.
func nested(n int) []byte {
	var b strings.Builder
	b.WriteString("name = \"x\"\n[ssh]\n")
	for i := 0; b.Len() < n; i++ {
		b.WriteString("authorized_keys = " + strings.Repeat("[", 9000) + strings.Repeat("]", 9000) + "\n")
	}
	return []byte(b.String())
}

// allocated returns the bytes Parse allocates on data.
func allocated(t testing.TB, dir string, data []byte) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	Parse(filepath.Join(dir, FileName), data)
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// Memory is linear in the input, on inputs the old scanner took quadratic
// memory for (no timing: allocated bytes are deterministic). The old
// scanner allocated 18 MB for 2 KB of nested arrays and 1.9 GB for 20 KB.
func TestLinear(t *testing.T) {
	dir := t.TempDir()
	inputs := map[string]func(n int) []byte{
		"nested arrays": func(n int) []byte {
			return []byte("x = " + strings.Repeat("[", n/2) + strings.Repeat("]", n/2) + "\n")
		},
		"nested inline tables": func(n int) []byte {
			return []byte("x = " + strings.Repeat("{a=", n/4) + "1" + strings.Repeat("}", n/4) + "\n")
		},
		"many shares": func(n int) []byte {
			return []byte(strings.Repeat("[[share]]\n", n/10))
		},
		"many machines": func(n int) []byte {
			var b strings.Builder
			for i := 0; b.Len() < n; i++ {
				fmt.Fprintf(&b, "[microvm.machines.vm%d]\naddress = \"10.0.0.1\"\n", i)
			}
			return []byte(b.String())
		},
		"long array": func(n int) []byte {
			return []byte("[ssh]\nauthorized_keys = [" + strings.Repeat("\"k\",", n/4) + "]\n")
		},
	}
	for name, gen := range inputs {
		small, large := allocated(t, dir, gen(20_000)), allocated(t, dir, gen(200_000))
		t.Logf("%s: %d bytes allocated for 20 KB, %d for 200 KB", name, small, large)
		if large > 20*small+1<<20 {
			t.Errorf("%s: %d bytes for 20 KB, %d for 200 KB: not linear", name, small, large)
		}
		if large > 100<<20 {
			t.Errorf("%s: %d bytes for 200 KB", name, large)
		}
	}
}

// BenchmarkParseNested parses 100 KB of deeply nested arrays (the issue's
// input: 24 GB with the old scanner).
func BenchmarkParseNested100K(b *testing.B) {
	data := nested(100 << 10)
	benchParse(b, data)
}

// hostile are inputs of n bytes that make the decoder allocate the most
// per byte (all of them refused).
func hostile(n int) map[string][]byte {
	var m strings.Builder
	for i := 0; m.Len() < n-40; i++ {
		fmt.Fprintf(&m, "[microvm.machines.v%d]\n", i)
	}
	return map[string][]byte{
		"empty strings": []byte("[ssh]\nauthorized_keys = [" + strings.Repeat("'',", n/3-10) + "]\n"),
		"integers":      []byte("x = [" + strings.Repeat("1,", n/2-10) + "]\n"),
		"[[share]]":     []byte(strings.Repeat("[[share]]\n", n/10)),
		"inline shares": []byte("share = [" + strings.Repeat("{},", n/3-10) + "]\n"),
		"machines":      []byte(m.String()),
	}
}

// At the cap, the most hostile inputs allocate less than 100 MB in all
// (so less at any moment).
func TestCapMemory(t *testing.T) {
	dir := t.TempDir()
	for name, data := range hostile(MaxFileSize) {
		a := allocated(t, dir, data)
		t.Logf("%s: %d bytes in, %.1f MB allocated", name, len(data), float64(a)/(1<<20))
		if a > 100<<20 {
			t.Errorf("%s: %d bytes allocated for %d bytes of Vmfile", name, a, len(data))
		}
	}
}

// BenchmarkParseCap parses the input of TestCapMemory that allocates the
// most: the largest work Parse does.
func BenchmarkParseCap(b *testing.B) {
	benchParse(b, hostile(MaxFileSize - 100)["inline shares"])
}

func benchParse(b *testing.B, data []byte) {
	dir := b.TempDir()
	path := filepath.Join(dir, FileName)
	// The bytes allocated by one Parse bound its peak memory.
	alloc := allocated(b, dir, data)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	cpu := cpuTime()
	for b.Loop() {
		Parse(path, data)
	}
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N)/1e6, "cpu-ms/op")
	b.ReportMetric(float64(alloc)/(1<<20), "MB-alloc/op")
}

// cpuTime returns the process's user and system CPU time in ns: on a
// loaded machine, a truer cost than wall time.
func cpuTime() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkLoad50MB loads a 50 MB Vmfile: refused at the cap without
// reading it.
func BenchmarkLoad50MB(b *testing.B) {
	dir := b.TempDir()
	f, err := os.Create(filepath.Join(dir, FileName))
	if err != nil {
		b.Fatal(err)
	}
	chunk := nested(1 << 20)
	for written := 0; written < 50<<20; written += len(chunk) {
		if _, err := f.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	f.Close()
	b.ReportAllocs()
	cpu := cpuTime()
	for b.Loop() {
		if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "more than the 262144 (256 KiB) devvm reads") {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N)/1e6, "cpu-ms/op")
}
