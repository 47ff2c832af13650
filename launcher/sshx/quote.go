package sshx

import "strings"

// ShellQuote joins argv into a POSIX shell command line that the remote shell splits back
// into exactly argv: words made only of safe characters are left alone, others are put in
// single quotes (an embedded ' becomes '\”), and an empty word becomes ”.
func ShellQuote(argv []string) string {
	var b strings.Builder
	for i, a := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		switch {
		case a == "":
			b.WriteString("''")
		case strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@+:,./-") == "":
			b.WriteString(a)
		default:
			b.WriteByte('\'')
			b.WriteString(strings.ReplaceAll(a, "'", `'\''`))
			b.WriteByte('\'')
		}
	}
	return b.String()
}
