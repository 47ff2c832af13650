package guix

import (
	"os"
)

// OSConfig is what a Scheme file shows without evaluating it.
type OSConfig struct {
	// DefinesOS: the file's value is an operating-system: its last
	// top-level form is (operating-system …), or a variable a top-level
	// (define VAR (operating-system …)) defines.
	DefinesOS bool
	// NineP are its literal 9p file systems, in order.
	NineP []Share
}

// ReadOSConfig reads path's top-level forms (no guix call, nothing
// evaluated). A file that does not parse is not an OS config.
func ReadOSConfig(path string) (OSConfig, error) {
	var c OSConfig
	src, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	data, err := parseSexps(string(src))
	if err != nil || len(data) == 0 {
		return c, nil
	}
	defined := map[string]bool{}
	for _, d := range data {
		if d.head() == "define" && len(d.list) == 3 && d.list[2].head() == "operating-system" {
			defined[d.list[1].atom] = true
		}
		d.walk(func(n *node) {
			if n.head() != "file-system" {
				return
			}
			var s Share
			nineP := false
			for _, f := range n.list[1:] {
				if len(f.list) < 2 {
					continue
				}
				v := f.list[1]
				switch f.head() {
				case "mount-point":
					s.Guest = v.str
				case "device":
					s.Tag = v.str
				case "type":
					nineP = v.isStr && v.str == "9p"
				case "flags":
					v.walk(func(x *node) { s.ReadOnly = s.ReadOnly || x.atom == "read-only" })
				}
			}
			if nineP && s.Tag != "" && s.Guest != "" {
				c.NineP = append(c.NineP, s)
			}
		})
	}
	last := data[len(data)-1]
	c.DefinesOS = last.head() == "operating-system" || (!last.isList && !last.isStr && defined[last.atom])
	return c, nil
}
