package guix

import (
	"fmt"
	"regexp"
	"strings"
)

// Failure kinds of a guix run.
const (
	FailNoDaemon    = "no-daemon"
	FailOffline     = "offline"
	FailPackage     = "unknown-package"
	FailConfig      = "config-error"
	FailDuplicate   = "duplicate-service"
	FailSubstitutes = "substitutes-stalled"
	FailTimeout     = "timeout"
	FailNoGuix      = "no-guix"
	FailAuth        = "channel-authentication"
	FailOther       = "guix-failed"
)

// BuildError is a guix failure turned into one clear error.
type BuildError struct {
	Kind string
	Msg  string   // what failed
	Hint string   // what to do next
	Tail []string // last lines guix printed on stderr
	Log  string   // full log
}

func (e *BuildError) Error() string {
	var b strings.Builder
	b.WriteString(e.Msg)
	if len(e.Tail) > 0 {
		b.WriteString("\nlast lines from guix:\n")
		for _, l := range e.Tail {
			b.WriteString("  | " + l + "\n")
		}
	} else {
		b.WriteString("\n")
	}
	if e.Hint != "" {
		b.WriteString("hint: " + e.Hint + "\n")
	}
	if e.Log != "" {
		b.WriteString("full log: " + e.Log)
	}
	return strings.TrimRight(b.String(), "\n")
}

var (
	reNoDaemon = regexp.MustCompile("failed to connect to [`'\"]?[^ ]*daemon-socket|guix-daemon.*not running|Connection refused.*daemon-socket")
	reOffline  = regexp.MustCompile(`getaddrinfo|failed to resolve address|Could not resolve host|Name or service not known|Temporary failure in name resolution|Network is unreachable|unable to access .*: Failed to connect|Git error: .*(connect|resolve)`)
	rePackage  = regexp.MustCompile(`unknown package|specification->package|package not found|no package .*found|package-not-found`)
	reKeys     = regexp.MustCompile(`canonicalize-path: No such file or directory`)
	reDup      = regexp.MustCompile(`provided more than once|service '[^']*' requires '[^']*', which is not provided`)
	reConfig   = regexp.MustCompile(`failed to load|Unbound variable|unbound variable|syntax error|Wrong type|missing closing parenthesis|end of file|In procedure|invalid field specifier|error:`)
	reSubst    = regexp.MustCompile(`looking for substitutes`)
	// guix:guix/channels.scm (latest-channel-instance) and
	// guix:guix/git-authenticate.scm, v1.5.0.
	reAuth = regexp.MustCompile(`lacks an introduction and cannot be authenticated|not signed by an authorized key|could not authenticate commit|lacks a signature|is not a descendant of introductory commit`)
)

// Classify turns a failed guix run (its stderr tail and exit code) into a
// BuildError with a hint. config and channels name the inputs for hints.
func Classify(tail []string, exit int, config, channels string) *BuildError {
	text := strings.Join(tail, "\n")
	e := &BuildError{Tail: tail}
	switch {
	case reNoDaemon.MatchString(text):
		e.Kind, e.Msg = FailNoDaemon, "guix could not reach its build daemon"
		e.Hint = "start it: `sudo systemctl start guix-daemon` (or `sudo guix-daemon --build-users-group=guixbuild &`), then run `devvm doctor`"
	case reAuth.MatchString(text):
		e.Kind, e.Msg = FailAuth, "guix could not authenticate a channel of "+channels
		e.Hint = "a pinned fork of Guix has no introduction of its own, or commits not signed by Guix's keys: give its channel an (introduction …) in " + channels +
			", or, if you trust it, set [guix] disable_authentication = true in the Vmfile (guix time-machine --disable-authentication)"
	case reOffline.MatchString(text):
		e.Kind, e.Msg = FailOffline, "guix could not fetch the pinned channels (no network?)"
		e.Hint = "the first `guix time-machine` run for a pin needs the network to fetch the channels of " + channels +
			" (later runs reuse the cache); connect and retry, or pin a commit already in your cache (`guix describe -f channels` after `guix pull` prints one)"
	case rePackage.MatchString(text):
		e.Kind, e.Msg = FailPackage, "the VM config names a package guix does not know"
		e.Hint = "check the spelling in " + config + " (or the manifest) with `guix search NAME`; names are case-sensitive and the pinned channels decide what exists"
	case reKeys.MatchString(text):
		e.Kind, e.Msg = FailConfig, "the VM config names a key file that does not exist"
		e.Hint = "devvm writes its authorized_keys (in its state directory) before each build; if " + config + " names another file in (local-file …), create it or fix the path"
	case reDup.MatchString(text):
		e.Kind, e.Msg = FailDuplicate, "the VM config declares conflicting services"
		e.Hint = "a service or file system appears twice in " + config + " (e.g. openssh added twice, or a 9p mount point also passed with --share); remove one"
	case reConfig.MatchString(text):
		e.Kind, e.Msg = FailConfig, "guix could not evaluate the VM config"
		e.Hint = "fix " + config + " at the place guix names above; `guix system vm -d " + config + "` checks it in seconds without building"
	default:
		e.Kind, e.Msg = FailOther, fmt.Sprintf("guix failed (exit status %d)", exit)
		e.Hint = "see the full log; `devvm doctor` checks the usual suspects"
	}
	return e
}

// substituteOnly reports whether a line is an offline build's endless
// "looking for substitutes" progress.
func substituteOnly(line string) bool { return reSubst.MatchString(line) }
