package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// normalizeArgs rearranges a command line so the flag parser (Go's flag
// package, which stops at the first argument) sees every flag:
//
//   - a command's own flags given after its arguments move in front of them
//     (`devvm status qbuf --json`, `devvm ssh qbuf -t`);
//   - global flags given after the command move in front of it
//     (`devvm ssh -C ../other`);
//   - nothing after the first `--` is touched; for ssh, when there is one the
//     command always finds it in its arguments (the parser drops a `--` that
//     directly follows the flags, so one is inserted there), so a guest
//     command keeps its own `--`: `devvm ssh -- git log -- README.md`.
//
// Unknown flags stay where the parser reports them, except for ssh, where
// one after the machine name stays an argument and ssh refuses it with the
// order to use: nothing reaches the guest without `--`.
func normalizeArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	i := 1
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" || !isFlag(a) {
			break
		}
		out = append(out, a)
		if f := lookupFlag(app.Flags, a); f != nil && takesValue(f, a) && i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
	}
	if i >= len(args) || args[i] == "--" {
		return append(out, args[i:]...)
	}
	cmd := app.Command(args[i])
	if cmd == nil {
		return append(out, args[i:]...)
	}
	var globals, flags, positional []string
	rest := args[i+1:]
	dashdash := -1
	for j := 0; j < len(rest); j++ {
		a := rest[j]
		if a == "--" {
			dashdash = j
			break
		}
		if !isFlag(a) {
			positional = append(positional, a)
			continue
		}
		var dst *[]string
		f := lookupFlag(cmd.Flags, a)
		switch {
		case f != nil:
			dst = &flags
		case lookupFlag(app.Flags, a) != nil:
			f, dst = lookupFlag(app.Flags, a), &globals
		case isHelp(a):
			dst = &flags
		case cmd.Name == "ssh" && len(positional) > 0:
			positional = append(positional, a)
			continue
		default:
			dst = &flags
		}
		*dst = append(*dst, a)
		if f != nil && takesValue(f, a) && j+1 < len(rest) {
			j++
			*dst = append(*dst, rest[j])
		}
	}
	out = append(out, globals...)
	out = append(out, args[i])
	out = append(out, flags...)
	if dashdash < 0 {
		return append(out, positional...)
	}
	out = append(out, "--")
	out = append(out, positional...)
	if cmd.Name != "ssh" {
		dashdash++ // other commands: `--` only ends the flags
	}
	return append(out, rest[dashdash:]...)
}

func isFlag(a string) bool { return len(a) > 1 && a[0] == '-' }

func isHelp(a string) bool {
	n := flagName(a)
	return n == "h" || n == "help"
}

// flagName is the name in -name, --name or --name=value.
func flagName(a string) string {
	n, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
	return n
}

func lookupFlag(fs []cli.Flag, a string) cli.Flag {
	n := flagName(a)
	for _, f := range fs {
		for _, name := range f.Names() {
			if name == n {
				return f
			}
		}
	}
	return nil
}

// takesValue tells whether flag f given as a needs the next word as its
// value (it is not a bool flag and a has no "=value").
func takesValue(f cli.Flag, a string) bool {
	if strings.Contains(a, "=") {
		return false
	}
	d, ok := f.(cli.DocGenerationFlag)
	return ok && d.TakesValue()
}
