package vmfile

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// The TOML decoder does not tell where a key it decoded (or did not decode)
// was written, so errors found after decoding get their line numbers from
// this scanner. It reads TOML just well enough to know, for every key
// assignment, table header and inline table, its full key path and its line,
// with array-of-tables indices ("share[1].guest"). It never guesses: on
// anything it does not understand it stops, and keys after that point have
// no line.

// seg is one step of a key path: a key, or an index into an array.
type seg struct {
	key   string
	index int // -1 for a key step
}

func keySeg(k string) seg { return seg{key: k, index: -1} }

// keyPath renders a path the way errors name keys: `share[1].guest`,
// `microvm.machines.vm1.address`, `microvm.machines."a.b"`.
func keyPath(segs ...seg) string {
	var b strings.Builder
	for _, s := range segs {
		if s.index >= 0 {
			fmt.Fprintf(&b, "[%d]", s.index)
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(quoteKey(s.key))
	}
	return b.String()
}

// quoteKey returns k as a TOML bare key when it is one, else quoted.
func quoteKey(k string) string {
	if k != "" && strings.Trim(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == "" {
		return k
	}
	return tomlString(k)
}

// keyNames drops the indices of a path, leaving the names the decoder uses
// (toml.Key).
func keyNames(segs []seg) []string {
	var out []string
	for _, s := range segs {
		if s.index < 0 {
			out = append(out, s.key)
		}
	}
	return out
}

type keyEntry struct {
	path  string   // keyPath of the key, with indices
	names []string // the same without indices
	line  int
	kind  string // TOML type as toml.MetaData.Type names it ("" unknown)
	elem  bool   // an element of an array: path ends in an index
}

// keyIndex lists the keys of a TOML document in the order written.
type keyIndex struct{ entries []keyEntry }

// line returns the line where the key path (as keyPath renders it) is first
// written or its table is first opened, or 0.
func (ix *keyIndex) line(path string) int {
	for _, e := range ix.entries {
		if e.path == path {
			return e.line
		}
	}
	return 0
}

// matches lists the occurrences of a key as the decoder names it (no
// indices), in document order.
func (ix *keyIndex) matches(names []string) []keyEntry {
	var out []keyEntry
	for _, e := range ix.entries {
		if !e.elem && slices.Equal(e.names, names) {
			out = append(out, e)
		}
	}
	return out
}

// find returns the first occurrence of a key (names without indices) whose
// value has the TOML type kind ("" for any). Without a match of that type
// it only answers when the key occurs once.
func (ix *keyIndex) find(names []string, kind string) (keyEntry, bool) {
	all := ix.matches(names)
	for _, e := range all {
		if kind == "" || e.kind == kind {
			return e, true
		}
	}
	if len(all) == 1 {
		return all[0], true
	}
	return keyEntry{}, false
}

// onLine returns the only occurrence of a key (names without indices) on a
// line.
func (ix *keyIndex) onLine(names []string, line int) (keyEntry, bool) {
	var found []keyEntry
	for _, e := range ix.matches(names) {
		if e.line == line {
			found = append(found, e)
		}
	}
	if len(found) != 1 {
		return keyEntry{}, false
	}
	return found[0], true
}

// scanKeys indexes the keys of data. Input it cannot follow ends the scan.
func scanKeys(data []byte) *keyIndex {
	sc := &scanner{s: data, line: 1, aot: map[string]int{}, ix: &keyIndex{}}
	sc.document()
	return sc.ix
}

type scanner struct {
	s    []byte
	pos  int
	line int
	aot  map[string]int // array-of-tables path -> tables seen so far
	seen map[string]bool
	ix   *keyIndex
}

func (sc *scanner) eof() bool { return sc.pos >= len(sc.s) }

func (sc *scanner) peek(off int) byte {
	if sc.pos+off < len(sc.s) {
		return sc.s[sc.pos+off]
	}
	return 0
}

func (sc *scanner) next() byte {
	c := sc.s[sc.pos]
	sc.pos++
	if c == '\n' {
		sc.line++
	}
	return c
}

// record notes the first place a path is written or opened.
func (sc *scanner) record(path []seg, line int, kind string) {
	p := keyPath(path...)
	if sc.seen == nil {
		sc.seen = map[string]bool{}
	}
	if sc.seen[p] {
		return
	}
	sc.seen[p] = true
	elem := len(path) > 0 && path[len(path)-1].index >= 0
	sc.ix.entries = append(sc.ix.entries, keyEntry{path: p, names: keyNames(path), line: line, kind: kind, elem: elem})
}

// recordAll records path[:from], path[:from+1], ...: the tables a dotted
// key or header opens implicitly, then path itself with the type kind.
func (sc *scanner) recordAll(path []seg, from, line int, kind string) {
	for i := max(from, 1); i < len(path); i++ {
		k := tomlHash
		if path[i].index >= 0 {
			k = tomlArrayHash
		}
		sc.record(path[:i], line, k)
	}
	if len(path) > 0 {
		sc.record(path, line, kind)
	}
}

// TOML types as toml.MetaData.Type names them.
const (
	tomlHash      = "Hash"
	tomlArrayHash = "ArrayHash"
)

// kindAhead tells the TOML type of the value at pos without consuming it.
func (sc *scanner) kindAhead() string {
	switch c := sc.peek(0); c {
	case '"', '\'':
		return "String"
	case '[':
		return "Array"
	case '{':
		return tomlHash
	}
	end := sc.pos
	for end < len(sc.s) && !strings.ContainsRune(",]}#\r\n", rune(sc.s[end])) {
		end++
	}
	v := strings.TrimSpace(string(sc.s[sc.pos:end]))
	switch {
	case v == "true" || v == "false":
		return "Bool"
	case strings.ContainsAny(v, ":") || len(v) >= 10 && v[4] == '-' && v[7] == '-':
		return "Datetime"
	case strings.HasPrefix(v, "0x") || strings.HasPrefix(v, "0o") || strings.HasPrefix(v, "0b"):
		return "Integer"
	case strings.ContainsAny(v, ".eEn"): // 1.5, 1e3, inf, nan
		return "Float"
	}
	return "Integer"
}

func (sc *scanner) skipWS() {
	for !sc.eof() && (sc.s[sc.pos] == ' ' || sc.s[sc.pos] == '\t') {
		sc.pos++
	}
}

func (sc *scanner) skipComment() {
	if sc.peek(0) == '#' {
		for !sc.eof() && sc.s[sc.pos] != '\n' {
			sc.pos++
		}
	}
}

// skipBlank skips whitespace, newlines and comments (inside arrays and
// TOML 1.1 inline tables).
func (sc *scanner) skipBlank() {
	for !sc.eof() {
		switch sc.s[sc.pos] {
		case ' ', '\t', '\r', '\n':
			sc.next()
		case '#':
			sc.skipComment()
		default:
			return
		}
	}
}

// endOfLine accepts the rest of a line after a header or key/value.
func (sc *scanner) endOfLine() bool {
	sc.skipWS()
	sc.skipComment()
	if sc.eof() {
		return true
	}
	if sc.peek(0) == '\r' {
		sc.pos++
	}
	if sc.peek(0) == '\n' {
		sc.next()
		return true
	}
	return false
}

func (sc *scanner) document() {
	var table []seg
	for {
		sc.skipWS()
		if sc.eof() {
			return
		}
		c := sc.peek(0)
		switch {
		case c == '#' || c == '\r' || c == '\n':
			if !sc.endOfLine() {
				return
			}
			continue
		case c == '[':
			line := sc.line
			arr := sc.peek(1) == '['
			sc.pos++
			if arr {
				sc.pos++
			}
			sc.skipWS()
			names, ok := sc.key()
			if !ok {
				return
			}
			sc.skipWS()
			if sc.peek(0) != ']' || (arr && sc.peek(1) != ']') {
				return
			}
			sc.pos++
			if arr {
				sc.pos++
			}
			table = sc.resolve(names, arr)
			sc.recordAll(table, 1, line, tomlHash)
		default:
			line := sc.line
			names, ok := sc.key()
			if !ok {
				return
			}
			sc.skipWS()
			if sc.peek(0) != '=' {
				return
			}
			sc.pos++
			sc.skipWS()
			path := appendKeys(table, names)
			sc.recordAll(path, len(table)+1, line, sc.kindAhead())
			if !sc.value(path) {
				return
			}
		}
		if !sc.endOfLine() {
			return
		}
	}
}

func appendKeys(base []seg, names []string) []seg {
	p := append([]seg(nil), base...)
	for _, n := range names {
		p = append(p, keySeg(n))
	}
	return p
}

// resolve turns a header's names into a path: tables that are arrays of
// tables refer to their last element; [[x]] opens a new element of x.
func (sc *scanner) resolve(names []string, arr bool) []seg {
	var p []seg
	for i, n := range names {
		p = append(p, keySeg(n))
		k := keyPath(p...)
		last := i == len(names)-1
		if last && arr {
			idx := sc.aot[k]
			sc.aot[k] = idx + 1
			p = append(p, seg{index: idx})
		} else if cnt, ok := sc.aot[k]; ok && cnt > 0 {
			p = append(p, seg{index: cnt - 1})
		}
	}
	return p
}

// key reads a (dotted) key.
func (sc *scanner) key() ([]string, bool) {
	var names []string
	for {
		sc.skipWS()
		var k string
		switch c := sc.peek(0); {
		case c == '"':
			s, ok := sc.basicString()
			if !ok {
				return nil, false
			}
			k = s
		case c == '\'':
			start := sc.pos + 1
			if !sc.literalString() {
				return nil, false
			}
			k = string(sc.s[start : sc.pos-1])
		case isBare(c):
			start := sc.pos
			for !sc.eof() && isBare(sc.s[sc.pos]) {
				sc.pos++
			}
			k = string(sc.s[start:sc.pos])
		default:
			return nil, false
		}
		names = append(names, k)
		sc.skipWS()
		if sc.peek(0) != '.' {
			return names, true
		}
		sc.pos++
	}
}

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// basicString reads a one-line "..." string and returns its value, so
// quoted keys compare equal to the decoder's names.
func (sc *scanner) basicString() (string, bool) {
	start := sc.pos
	sc.pos++
	for !sc.eof() {
		switch sc.s[sc.pos] {
		case '\\':
			sc.pos += 2
		case '"':
			sc.pos++
			v, err := unquoteTOML(string(sc.s[start:sc.pos]))
			return v, err == nil
		case '\n':
			return "", false
		default:
			sc.pos++
		}
	}
	return "", false
}

func (sc *scanner) literalString() bool {
	sc.pos++
	for !sc.eof() {
		switch sc.s[sc.pos] {
		case '\'':
			sc.pos++
			return true
		case '\n':
			return false
		}
		sc.pos++
	}
	return false
}

// multiline skips a multi-line string (three q quotes open and close it);
// the opening delimiter is at pos.
func (sc *scanner) multiline(q byte) bool {
	sc.pos += 3
	for !sc.eof() {
		c := sc.s[sc.pos]
		if c == '\\' && q == '"' {
			sc.next()
			if !sc.eof() {
				sc.next()
			}
			continue
		}
		if c == q && sc.peek(1) == q && sc.peek(2) == q {
			sc.pos += 3
			// Up to two more quotes belong to the content.
			for i := 0; i < 2 && sc.peek(0) == q; i++ {
				sc.pos++
			}
			return true
		}
		sc.next()
	}
	return false
}

// value skips a value, recording the keys of inline tables under path.
func (sc *scanner) value(path []seg) bool {
	switch c := sc.peek(0); c {
	case '"', '\'':
		if sc.peek(1) == c && sc.peek(2) == c {
			return sc.multiline(c)
		}
		if c == '"' {
			_, ok := sc.basicString()
			return ok
		}
		return sc.literalString()
	case '[':
		sc.pos++
		for i := 0; ; i++ {
			sc.skipBlank()
			if sc.peek(0) == ']' {
				sc.pos++
				return true
			}
			elem := append(append([]seg(nil), path...), seg{index: i})
			sc.record(elem, sc.line, sc.kindAhead())
			if !sc.value(elem) {
				return false
			}
			sc.skipBlank()
			switch sc.peek(0) {
			case ',':
				sc.pos++
			case ']':
				sc.pos++
				return true
			default:
				return false
			}
		}
	case '{':
		sc.pos++
		for {
			sc.skipBlank()
			if sc.peek(0) == '}' {
				sc.pos++
				return true
			}
			line := sc.line
			names, ok := sc.key()
			if !ok {
				return false
			}
			sc.skipWS()
			if sc.peek(0) != '=' {
				return false
			}
			sc.pos++
			sc.skipWS()
			p := appendKeys(path, names)
			sc.recordAll(p, len(path)+1, line, sc.kindAhead())
			if !sc.value(p) {
				return false
			}
			sc.skipBlank()
			switch sc.peek(0) {
			case ',':
				sc.pos++
			case '}':
				sc.pos++
				return true
			default:
				return false
			}
		}
	case 0:
		return false
	default:
		// Numbers, booleans, dates and times ("1979-05-27 07:32:00" has
		// a space): everything up to a delimiter.
		start := sc.pos
		for !sc.eof() && !strings.ContainsRune(",]}#\r\n", rune(sc.s[sc.pos])) {
			if !isBare(sc.s[sc.pos]) && !strings.ContainsRune(" \t:.+", rune(sc.s[sc.pos])) {
				return false
			}
			sc.pos++
		}
		return sc.pos > start
	}
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// unquoteTOML decodes a one-line TOML basic string, quotes included.
func unquoteTOML(q string) (string, error) {
	if len(q) < 2 || q[0] != '"' || q[len(q)-1] != '"' {
		return "", fmt.Errorf("not a basic string")
	}
	body := q[1 : len(q)-1]
	var b strings.Builder
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		i++
		if i >= len(body) {
			return "", fmt.Errorf("dangling backslash")
		}
		switch body[i] {
		case 'b':
			b.WriteByte('\b')
		case 't':
			b.WriteByte('\t')
		case 'n':
			b.WriteByte('\n')
		case 'f':
			b.WriteByte('\f')
		case 'r':
			b.WriteByte('\r')
		case 'e':
			b.WriteByte(0x1b)
		case '"', '\\':
			b.WriteByte(body[i])
		case 'x', 'u', 'U':
			n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[body[i]]
			if i+1+n > len(body) {
				return "", fmt.Errorf("short escape")
			}
			r, err := strconv.ParseUint(body[i+1:i+1+n], 16, 32)
			if err != nil {
				return "", err
			}
			b.WriteRune(rune(r))
			i += n
		default:
			return "", fmt.Errorf("unknown escape")
		}
	}
	return b.String(), nil
}
