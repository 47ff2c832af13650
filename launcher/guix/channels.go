package guix

import (
	"fmt"
	"os"
	"regexp"
	"strings"
)

// Channel is one (channel …) form of a channels file.
type Channel struct {
	Name   string
	URL    string
	Branch string
	Commit string
	// Inherit is the variable of an (inherit …) field, e.g.
	// %default-guix-channel, whose fields the others override.
	Inherit string
	// Introduction: the channel names its authentication introduction.
	Introduction bool
	Line         int
}

// defaultGuix is %default-guix-channel of Guix 1.5.0
// (guix:guix/channels.scm), which channels.scm files inherit from.
var defaultGuix = Channel{Name: "guix", URL: "https://git.guix.gnu.org/guix.git", Branch: "master", Introduction: true}

var fullCommit = regexp.MustCompile(`^[0-9a-f]{40}$`)

// ParseChannels reads the channel forms of a channels.scm.
func ParseChannels(src string) ([]Channel, error) {
	data, err := parseSexps(src)
	if err != nil {
		return nil, err
	}
	var out []Channel
	for _, d := range data {
		d.walk(func(n *node) {
			if n.atom == "%default-channels" {
				// Guix's own default: the guix channel at the tip of master.
				c := defaultGuix
				c.Inherit, c.Line = "%default-channels", n.line
				out = append(out, c)
				return
			}
			if n.head() != "channel" {
				return
			}
			c := Channel{Line: n.line}
			for _, f := range n.list[1:] {
				if f.head() == "inherit" && len(f.list) == 2 && f.list[1].atom == "%default-guix-channel" {
					c = defaultGuix
					c.Line = n.line
				}
			}
			for _, f := range n.list[1:] {
				if len(f.list) < 2 {
					continue
				}
				v := f.list[1]
				val := v.str
				if !v.isStr {
					val = strings.TrimPrefix(v.atom, "'")
					if val == "#f" {
						val = ""
					}
				}
				switch f.head() {
				case "name":
					c.Name = val
				case "url":
					c.URL = val
				case "branch":
					c.Branch = val
				case "commit":
					c.Commit = val
				case "inherit":
					c.Inherit = v.atom
				case "introduction":
					c.Introduction = v.isList || val != ""
				}
			}
			out = append(out, c)
		})
	}
	return out, nil
}

// CheckPinned refuses a channels file whose channels are not all pinned by
// a full 40-hex commit: a branch, tag or short hash makes `guix
// time-machine` contact the channel's server on every run.
func CheckPinned(path string) error {
	src, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading channels file: %w (set [guix] channels in the Vmfile, or run `devvm init` to write one)", err)
	}
	chans, err := ParseChannels(string(src))
	if err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	if len(chans) == 0 {
		return fmt.Errorf("%s: no (channel …) form found; write one with `guix describe -f channels > %s`", path, path)
	}
	for _, c := range chans {
		name := c.Name
		switch {
		case name != "":
		case c.Inherit != "":
			name = "(inherit " + c.Inherit + ")"
		default:
			name = "?"
		}
		if c.Inherit == "%default-channels" {
			return fmt.Errorf("%s:%d: %%default-channels is the guix channel at the tip of its master branch: guix time-machine would contact %s on every run (and fail offline). "+
				"Replace it with a pinned (channel (inherit %%default-guix-channel) (commit \"…\")), e.g. from `guix describe -f channels`", path, c.Line, c.URL)
		}
		switch {
		case fullCommit.MatchString(c.Commit):
			continue
		case c.Commit == "" && c.Branch != "":
			return unpinned(path, c, name, fmt.Sprintf("follows branch %q", c.Branch))
		case c.Commit == "":
			return unpinned(path, c, name, "has no commit")
		case regexp.MustCompile(`^[0-9a-fA-F]{4,39}$`).MatchString(c.Commit):
			return unpinned(path, c, name, fmt.Sprintf("is pinned by the short hash %q", c.Commit))
		default:
			return unpinned(path, c, name, fmt.Sprintf("is pinned by %q, a tag or branch name, not a full commit", c.Commit))
		}
	}
	return nil
}

func unpinned(path string, c Channel, name, what string) error {
	return fmt.Errorf("%s:%d: channel '%s %s: guix time-machine would contact %s on every run (and fail offline). "+
		"Pin it by full commit: run `guix describe -f channels > %s`, or write the 40-hex commit into (commit \"…\")",
		path, c.Line, name, what, orDefault(c.URL, "the channel's server"), path)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
