package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// version overrides the module version (-ldflags "-X main.version=…").
var version = ""

// buildVersion is what devvm says it is: the -ldflags version, else the
// module version `go install …@v1.2.3` records, with the VCS revision,
// time and dirty flag `go build` records in a checkout.
type buildVersion struct {
	Version  string
	Revision string
	Time     string
	Dirty    bool
	Go       string
}

func readVersion(info *debug.BuildInfo, ok bool) buildVersion {
	v := buildVersion{Version: version, Go: runtime.Version()}
	if ok {
		v.Go = info.GoVersion
		if v.Version == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			v.Version = info.Main.Version
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Revision = s.Value
			case "vcs.time":
				v.Time = s.Value
			case "vcs.modified":
				v.Dirty = s.Value == "true"
			}
		}
	}
	if v.Version == "" {
		v.Version = "(devel)"
	}
	return v
}

// String is the one-line form: "v1.2.3 (rev 0123456789ab, 2026-12-03T17:00:00Z, dirty)".
func (v buildVersion) String() string {
	s := v.Version
	if v.Revision != "" {
		rev := v.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		s += " (rev " + rev
		if v.Time != "" {
			s += ", " + v.Time
		}
		if v.Dirty {
			s += ", dirty"
		}
		s += ")"
	}
	return s
}

func versionString() string { return readVersion(debug.ReadBuildInfo()).String() }

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print devvm's version, VCS revision and Go version",
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError("devvm version takes no arguments")
			}
			v := readVersion(debug.ReadBuildInfo())
			fmt.Fprintf(streams(c).Out, "devvm %s\n%s %s/%s\n", v, v.Go, runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
