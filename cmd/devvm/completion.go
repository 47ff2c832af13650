package main

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/devvm/devvm/launcher/vmfile"
	"github.com/urfave/cli/v2"
)

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (commands, flags, machine names of the Vmfile)",
		ArgsUsage: "bash|zsh|fish",
		Description: "bash:  source <(devvm completion bash)          (or save it as ~/.local/share/bash-completion/completions/devvm)\n" +
			"zsh:   source <(devvm completion zsh)           (uses zsh's bashcompinit)\n" +
			"fish:  devvm completion fish > ~/.config/fish/completions/devvm.fish",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError("devvm completion takes one shell: bash, zsh or fish")
			}
			w := streams(c).Out
			switch c.Args().First() {
			case "bash":
				writeBashCompletion(w, c.App)
			case "zsh":
				fmt.Fprint(w, "# devvm completion for zsh (source it), through zsh's emulation of bash completion.\nautoload -U +X bashcompinit && bashcompinit\n")
				writeBashCompletion(w, c.App)
			case "fish":
				writeFishCompletion(w, c.App)
			default:
				return usageError("no completion for the shell %q: bash, zsh or fish", c.Args().First())
			}
			return nil
		},
	}
}

// completeMachinesCommand prints the machine names of the Vmfile devvm
// would use (honouring -C and DEVVM_DIR), one a line, for the completion
// scripts. It reads the Vmfile only, and prints nothing when there is none.
func completeMachinesCommand() *cli.Command {
	return &cli.Command{
		Name:   "__complete-machines",
		Hidden: true,
		Action: func(c *cli.Context) error {
			dir, err := checkoutDir(c)
			if err != nil {
				return nil
			}
			vf, err := vmfile.Load(dir)
			if err != nil {
				return nil
			}
			for _, n := range vmfileMachines(vf) {
				fmt.Fprintln(streams(c).Out, n)
			}
			return nil
		},
	}
}

// vmfileMachines are the machine names a Vmfile defines.
func vmfileMachines(vf *vmfile.Vmfile) []string {
	if vf.MicroVM != nil && len(vf.MicroVM.Machines) > 0 {
		var ns []string
		for n := range vf.MicroVM.Machines {
			ns = append(ns, n)
		}
		sort.Strings(ns)
		return ns
	}
	return []string{vf.Name}
}

// flagWords are a command's flags as typed: --long and -s.
func flagWords(fs []cli.Flag) []string {
	var out []string
	for _, f := range fs {
		for _, n := range f.Names() {
			if len(n) == 1 {
				out = append(out, "-"+n)
			} else {
				out = append(out, "--"+n)
			}
		}
	}
	return append(out, "--help")
}

// valueFlags are the flags that take a value (their next word is not a
// command or machine).
func valueFlags(fs []cli.Flag) []string {
	var out []string
	for _, f := range fs {
		if d, ok := f.(cli.DocGenerationFlag); ok && d.TakesValue() {
			for _, w := range flagWords([]cli.Flag{f}) {
				if w != "--help" {
					out = append(out, w)
				}
			}
		}
	}
	return out
}

func visibleCommands(app *cli.App) []*cli.Command {
	var out []*cli.Command
	for _, c := range app.Commands {
		if !c.Hidden {
			out = append(out, c)
		}
	}
	return out
}

// noMachineArgs are the commands whose arguments are not machine names.
var noMachineArgs = []string{"init", "doctor", "build", "list", "gc", "version", "completion", "cp", "share-serve", "help"}

func writeBashCompletion(w io.Writer, app *cli.App) {
	var names []string
	for _, c := range visibleCommands(app) {
		names = append(names, c.Names()...)
	}
	fmt.Fprintf(w, `# devvm completion for bash: source <(devvm completion bash)
_devvm_machines() {
	devvm ${_devvm_dir:+-C "$_devvm_dir"} __complete-machines 2>/dev/null
}
_devvm() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
	local cmd= i w _devvm_dir=
	for ((i = 1; i < COMP_CWORD; i++)); do
		w=${COMP_WORDS[i]}
		case $w in
		-C | --dir) ((i++)); _devvm_dir=${COMP_WORDS[i]} ;;
		--dir=*) _devvm_dir=${w#--dir=} ;;
		--) [[ $cmd == ssh ]] && return 0 ;;
		-*) ;;
		*) [[ -z $cmd ]] && cmd=$w ;;
		esac
	done
	COMPREPLY=()
	if [[ -z $cmd ]]; then
		case $prev in
		-C | --dir) COMPREPLY=($(compgen -d -- "$cur")); return 0 ;;
		esac
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W %q -- "$cur"))
		else
			COMPREPLY=($(compgen -W %q -- "$cur"))
		fi
		return 0
	fi
	local flags= values=
	case $cmd in
`, strings.Join(flagWords(app.Flags), " "), strings.Join(names, " "))
	for _, c := range visibleCommands(app) {
		fmt.Fprintf(w, "\t%s) flags=%q values=%q ;;\n", strings.Join(c.Names(), " | "), strings.Join(flagWords(c.Flags), " "), strings.Join(valueFlags(c.Flags), " "))
	}
	var noMachines []string
	for _, c := range visibleCommands(app) {
		if slices.Contains(noMachineArgs, c.Name) {
			noMachines = append(noMachines, c.Names()...)
		}
	}
	fmt.Fprintf(w, `	esac
	for w in $values; do
		[[ $prev == "$w" ]] && return 0
	done
	case $prev in -C | --dir) COMPREPLY=($(compgen -d -- "$cur")); return 0 ;; esac
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$flags --dir --debug" -- "$cur"))
		return 0
	fi
	case $cmd in
	completion) COMPREPLY=($(compgen -W "bash zsh fish" -- "$cur")) ;;
	cp) COMPREPLY=($(compgen -W "$(_devvm_machines | sed 's/$/:/')" -- "$cur") $(compgen -f -- "$cur")) ;;
	%s) ;;
	*) COMPREPLY=($(compgen -W "$(_devvm_machines)" -- "$cur")) ;;
	esac
	return 0
}
complete -o default -F _devvm devvm
`, strings.Join(noMachines, " | "))
}

func writeFishCompletion(w io.Writer, app *cli.App) {
	fmt.Fprintln(w, "# devvm completion for fish: devvm completion fish > ~/.config/fish/completions/devvm.fish")
	fmt.Fprintln(w, "complete -c devvm -f")
	fishFlags := func(cond string, fs []cli.Flag) {
		for _, f := range fs {
			line := "complete -c devvm -n " + fishQuote(cond)
			for _, n := range f.Names() {
				if len(n) == 1 {
					line += " -s " + n
				} else {
					line += " -l " + n
				}
			}
			if d, ok := f.(cli.DocGenerationFlag); ok {
				if d.TakesValue() {
					line += " -r"
				}
				line += " -d " + fishQuote(d.GetUsage())
			}
			fmt.Fprintln(w, line)
		}
	}
	fishFlags("true", app.Flags)
	for _, c := range visibleCommands(app) {
		for _, n := range c.Names() {
			fmt.Fprintf(w, "complete -c devvm -n __fish_use_subcommand -a %s -d %s\n", n, fishQuote(c.Usage))
		}
		cond := "__fish_seen_subcommand_from " + strings.Join(c.Names(), " ")
		fishFlags(cond, c.Flags)
		switch {
		case c.Name == "completion":
			fmt.Fprintf(w, "complete -c devvm -n %s -a 'bash zsh fish'\n", fishQuote(cond))
		case c.Name == "cp":
			fmt.Fprintf(w, "complete -c devvm -n %s -F -a '(devvm __complete-machines 2>/dev/null | string replace -r \\$ :)'\n", fishQuote(cond))
		case !slices.Contains(noMachineArgs, c.Name):
			fmt.Fprintf(w, "complete -c devvm -n %s -a '(devvm __complete-machines 2>/dev/null)'\n", fishQuote(cond))
		}
	}
}

// fishQuote quotes s for fish: in single quotes, \ and ' are escaped.
func fishQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
