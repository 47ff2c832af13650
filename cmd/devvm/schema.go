package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/urfave/cli/v2"
)

// Schema names the JSON devvm prints (status, list, doctor). Adding fields
// keeps it; renaming or removing one, or changing a meaning, makes v2.
const Schema = "devvm/v1"

// States are the values of a machine's "state".
var States = []string{backend.Running, backend.Stopped, backend.Starting, backend.Broken, backend.Failed}

// machinesJSON is what `status --json` and `list --json` print.
type machinesJSON struct {
	Schema   string        `json:"schema"`
	Machines []machineJSON `json:"machines"`
}

// machineJSON is one machine; `status` and `list` fill the same fields
// from the same backend.Status.
type machineJSON struct {
	Name     string `json:"name"`
	Backend  string `json:"backend"`
	Checkout string `json:"checkout,omitempty"`
	// State is one of States; Outdated is separate (a running machine
	// whose build inputs changed since boot).
	State    string        `json:"state"`
	Outdated bool          `json:"outdated"`
	Reason   string        `json:"reason,omitempty"`
	Hint     string        `json:"hint,omitempty"`
	PID      int           `json:"pid,omitempty"`
	Started  *time.Time    `json:"started,omitempty"`
	Uptime   string        `json:"uptime,omitempty"`
	Accel    string        `json:"accel,omitempty"`
	SSH      string        `json:"ssh,omitempty"`
	Shares   []shareJSON   `json:"shares"`
	Forwards []forwardJSON `json:"forwards"`
	CPU      float64       `json:"cpu_percent,omitempty"`
	RSS      uint64        `json:"rss_bytes,omitempty"`
	BuildKey string        `json:"build_key,omitempty"`
}

type shareJSON struct {
	Host     string `json:"host"`
	Guest    string `json:"guest"`
	Tag      string `json:"tag,omitempty"`
	Mode     string `json:"mode,omitempty"`
	ReadOnly bool   `json:"readonly"`
	Server   int    `json:"server_pid,omitempty"`
	Problem  string `json:"problem,omitempty"`
}

type forwardJSON struct {
	Proto string `json:"proto"`
	Bind  string `json:"bind"`
	Host  int    `json:"host"`
	Guest int    `json:"guest"`
}

// machineOf converts a backend status to the schema: a state outside
// States is reported as broken with the backend's word in the reason.
func machineOf(s backend.Status) machineJSON {
	m := machineJSON{
		Name: s.Name, Backend: s.Backend, Checkout: s.Checkout, State: s.State, Outdated: s.Outdated,
		Reason: s.Reason, Hint: s.Hint, PID: s.PID, Uptime: s.Uptime, Accel: s.Accel, SSH: s.SSH,
		CPU: s.CPU, RSS: s.RSS, BuildKey: s.BuildKey,
		Shares: []shareJSON{}, Forwards: []forwardJSON{},
	}
	switch {
	case s.State == backend.Outdated:
		m.State, m.Outdated = backend.Running, true
	case !slices.Contains(States, s.State):
		m.State = backend.Broken
		m.Reason = strings.TrimSuffix(fmt.Sprintf("the backend reports the state %q; %s", s.State, s.Reason), "; ")
	}
	if !s.Started.IsZero() {
		t := s.Started
		m.Started = &t
	}
	for _, sh := range s.ShareList {
		m.Shares = append(m.Shares, shareJSON(sh))
	}
	for _, f := range s.ForwardList {
		m.Forwards = append(m.Forwards, forwardJSON(f))
	}
	return m
}

// checksJSON is what `doctor --json` prints.
type checksJSON struct {
	Schema string      `json:"schema"`
	OK     bool        `json:"ok"` // no required check failed
	Checks []checkJSON `json:"checks"`
}

type checkJSON struct {
	Name     string `json:"name"`
	OK       bool   `json:"ok"`
	Required bool   `json:"required"`
	Detail   string `json:"detail"`
	Fix      string `json:"fix,omitempty"`
}

// formatFlags are --json and --format, shared by status, list and doctor.
func formatFlags(what string) []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "json", Usage: "print " + what + " as JSON (schema " + Schema + ", docs/dev-vm.md)"},
		&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Usage: "print each item with a Go template over its JSON fields, e.g. '{{.Name}} {{.State}}'; {{json .}} prints JSON"},
	}
}

// output is how a command prints: text (neither flag), JSON or a template.
type output struct {
	JSON   bool
	Format string
}

func outputOf(c *cli.Context) (output, error) {
	o := output{JSON: c.Bool("json"), Format: c.String("format")}
	if o.JSON && o.Format != "" {
		return o, usageError("--json and --format exclude each other")
	}
	return o, nil
}

// template parses --format (nil without one; a usage error when it does
// not parse). Fields are the Go names of the JSON fields (.Name, .State,
// .Shares…), and {{json .}} prints a value as JSON, as `limactl list
// --format` has.
func (o output) template() (*template.Template, error) {
	if o.Format == "" {
		return nil, nil
	}
	t, err := template.New("format").Option("missingkey=error").Funcs(template.FuncMap{
		"json": func(v any) (string, error) {
			var b strings.Builder
			enc := json.NewEncoder(&b)
			enc.SetEscapeHTML(false)
			err := enc.Encode(v)
			return strings.TrimSuffix(b.String(), "\n"), err
		},
	}).Parse(o.Format)
	if err != nil {
		return nil, usageError("--format: %v", err)
	}
	return t, nil
}

// print writes machines as JSON in the schema's envelope, one per line
// with the template t, or as text.
func (o output) print(w io.Writer, t *template.Template, ms []machineJSON, text func() error) error {
	switch {
	case o.JSON:
		return printJSON(w, machinesJSON{Schema: Schema, Machines: ms})
	case t != nil:
		return eachFormatted(w, t, ms)
	}
	return text()
}

// eachFormatted prints every item with the --format template, one per line.
func eachFormatted[T any](w io.Writer, t *template.Template, items []T) error {
	for _, it := range items {
		if err := t.Execute(w, it); err != nil {
			return usageError("--format: %v", err)
		}
		fmt.Fprintln(w)
	}
	return nil
}
