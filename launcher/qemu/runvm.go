// Package qemu turns the run-vm.sh that `guix system vm` produced into a
// QEMU command line devvm controls (accelerator, network, shares, QMP,
// pidfile, serial console), and starts it.
package qemu

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// RunVM is a parsed run-vm.sh.
type RunVM struct {
	Path string
	// Argv is QEMU's command line as written in the script's exec line
	// (program first), without the trailing "$@".
	Argv []string
	// StoreDir is the store the script lives in (e.g. /gnu/store), taken
	// from the shebang's store item: never hard-coded.
	StoreDir string
	// Persistent is set when the script was built with --persistent (it
	// copies the image to a writable qcow2 before exec).
	Persistent bool
}

// ParseRunVM reads and parses a run-vm.sh.
func ParseRunVM(path string) (*RunVM, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the VM script: %w (was it garbage-collected? run `devvm build --rebuild`)", err)
	}
	r, err := ParseRunVMText(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	r.Path = path
	return r, nil
}

// ParseRunVMText parses the text of a run-vm.sh: a shebang, optionally
// a copy-image line (--persistent), and one `exec QEMU ARGS… "$@"` line.
func ParseRunVMText(text string) (*RunVM, error) {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "#!") {
		return nil, fmt.Errorf("not a run-vm.sh script: no shebang and exec line")
	}
	r := &RunVM{StoreDir: storeDirOf(strings.Fields(strings.TrimPrefix(lines[0], "#!"))[0])}
	var execLine string
	for _, l := range lines[1:] {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "exec "):
			if execLine != "" {
				return nil, fmt.Errorf("more than one exec line")
			}
			execLine = strings.TrimPrefix(l, "exec ")
		case execLine == "":
			r.Persistent = true // the copy-image line of --persistent builds
		default:
			return nil, fmt.Errorf("unexpected line after exec: %q", l)
		}
	}
	if execLine == "" {
		return nil, fmt.Errorf("no `exec QEMU … \"$@\"` line: devvm understands the scripts of `guix system vm` only")
	}
	words, err := shellWords(execLine)
	if err != nil {
		return nil, err
	}
	if len(words) < 2 || words[len(words)-1] != `"$@"` {
		return nil, fmt.Errorf("the exec line does not end in \"$@\": devvm cannot add its own QEMU options")
	}
	r.Argv = make([]string, 0, len(words)-1)
	for _, w := range words[:len(words)-1] {
		r.Argv = append(r.Argv, unquote(w))
	}
	if !strings.Contains(filepath.Base(r.Argv[0]), "qemu-system-") {
		return nil, fmt.Errorf("the exec line runs %q, not qemu-system-*", r.Argv[0])
	}
	if r.StoreDir == "" {
		r.StoreDir = storeDirOf(r.Argv[0])
	}
	return r, nil
}

// storeDirOf returns the store directory of a path inside a store item
// (/gnu/store/<hash>-name/bin/sh → /gnu/store), or "".
func storeDirOf(p string) string {
	parts := strings.Split(p, "/")
	for i, part := range parts {
		if i > 0 && len(part) > 33 && part[32] == '-' && isBase32(part[:32]) {
			return strings.Join(parts[:i], "/")
		}
	}
	return ""
}

func isBase32(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// shellWords splits a line into words, keeping each word's quoting so the
// caller can tell "$@" from $@. Supports the quoting guix emits (double
// quotes with backslash escapes) plus single quotes.
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '"':
			inWord = true
			cur.WriteByte(c)
			for i++; ; i++ {
				if i >= len(s) {
					return nil, fmt.Errorf("unterminated double quote in exec line")
				}
				if s[i] == '\\' && i+1 < len(s) {
					cur.WriteByte(s[i])
					i++
					cur.WriteByte(s[i])
					continue
				}
				cur.WriteByte(s[i])
				if s[i] == '"' {
					break
				}
			}
		case c == '\'':
			inWord = true
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("unterminated single quote in exec line")
			}
			cur.WriteString(s[i : i+end+2])
			i += end + 1
		case c == '\\' && i+1 < len(s):
			inWord = true
			cur.WriteByte(c)
			i++
			cur.WriteByte(s[i])
		default:
			inWord = true
			cur.WriteByte(c)
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// unquote removes shell quoting from a word produced by shellWords.
func unquote(w string) string {
	var b strings.Builder
	for i := 0; i < len(w); i++ {
		switch c := w[i]; c {
		case '"':
			for i++; i < len(w) && w[i] != '"'; i++ {
				if w[i] == '\\' && i+1 < len(w) && strings.IndexByte("\"\\$`\n", w[i+1]) >= 0 {
					i++
				}
				b.WriteByte(w[i])
			}
		case '\'':
			for i++; i < len(w) && w[i] != '\''; i++ {
				b.WriteByte(w[i])
			}
		case '\\':
			if i+1 < len(w) {
				i++
				b.WriteByte(w[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// IsStoreItem reports whether p is an item directly in a store
// (<store>/<hash>-<name>) whose name ends with suffix.
func IsStoreItem(p, suffix string) bool {
	dir := storeDirOf(p)
	return dir != "" && filepath.Dir(p) == dir && strings.HasSuffix(p, suffix)
}
