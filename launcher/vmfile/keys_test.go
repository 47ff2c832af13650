package vmfile

import (
	"testing"
)

func TestScanKeys(t *testing.T) {
	doc := `# comment [[share]]
name = "x" # [ssh]
a.b . "c.d" = 1
[[share]]
guest = "/a"
[share.sub]
k = 'v'
[[share]]
str = """
tricky = 1
[[share]]
"""
guest = "/b"
[[share.inner]]
x = 1979-05-27 07:32:00
[[share.inner]]
x = [1, 2,
  {y = 3}]
[microvm.machines."vm.1"]
address = "10.1.0.2"
[ssh]
t = { port = 1,
  # TOML 1.1: newlines and comments in inline tables
  deep = { z = true }, }
`
	want := map[string]int{
		"name":                            2,
		"a":                               3,
		"a.b":                             3,
		`a.b."c.d"`:                       3,
		"share":                           4,
		"share[0]":                        4,
		"share[0].guest":                  5,
		"share[0].sub":                    6,
		"share[0].sub.k":                  7,
		"share[1]":                        8,
		"share[1].str":                    9,
		"share[1].guest":                  13,
		"share[1].inner[0].x":             15,
		"share[1].inner[1]":               16,
		"share[1].inner[1].x":             17,
		"share[1].inner[1].x[2].y":        18,
		`microvm.machines."vm.1"`:         19,
		`microvm.machines."vm.1".address`: 20,
		"ssh.t.port":                      22,
		"ssh.t.deep.z":                    24,
		"tricky":                          0,
		"share[2]":                        0,
		"share[0].inner":                  0,
	}
	ix := scanKeys([]byte(doc))
	for k, line := range want {
		if got := ix.line(k); got != line {
			t.Errorf("line(%s) = %d, want %d", k, got, line)
		}
	}
	if e, ok := ix.find([]string{"share", "guest"}, ""); !ok || e.path != "share[0].guest" {
		t.Errorf("find(share.guest) = %+v, %v", e, ok)
	}
	if e, ok := ix.onLine([]string{"share", "guest"}, 13); !ok || e.path != "share[1].guest" {
		t.Errorf("onLine(share.guest, 13) = %+v, %v", e, ok)
	}
	if e, ok := ix.find([]string{"share", "inner", "x"}, "Array"); !ok || e.path != "share[1].inner[1].x" {
		t.Errorf("find(share.inner.x, Array) = %+v, %v", e, ok)
	}
	if e, ok := ix.find([]string{"share", "inner", "x"}, "Datetime"); !ok || e.path != "share[1].inner[0].x" {
		t.Errorf("find(share.inner.x, Datetime) = %+v, %v", e, ok)
	}
}

// The scanner stops at what it cannot read: keys before stay, keys after
// have no line (never a wrong one).
func TestScanKeysStops(t *testing.T) {
	ix := scanKeys([]byte("a = 1\nb = @@@ x\n[[share]]\nguest = 1\n"))
	if ix.line("a") != 1 {
		t.Errorf("a: %d", ix.line("a"))
	}
	if ix.line("share[0].guest") != 0 {
		t.Errorf("share[0].guest found after unreadable input")
	}
	ix = scanKeys([]byte("s = \"\"\"\nnever closed\n[[share]]\nguest = 1\n"))
	if ix.line("share[0].guest") != 0 {
		t.Errorf("share[0].guest found inside an unclosed string")
	}
}

func TestTomlString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uo\te`, "tab\tnl\nnul\x00del\x7f", "ünï"} {
		got, err := unquoteTOML(tomlString(s))
		if err != nil || got != s {
			t.Errorf("unquoteTOML(tomlString(%q)) = %q, %v", s, got, err)
		}
	}
}
