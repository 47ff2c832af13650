package vmfile

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// A Vmfile is read in one pass over the expressions of go-toml/v2's parser
// (linear in the input; it refuses values nested more than 10000 deep).
// Each key is matched against the Go types as it comes: exact names, TOML
// types that fit, TOML's rules for defining keys and tables once. Only keys
// devvm reads are kept, so the work per key is bounded by the depth of the
// schema (at most five names), whatever the file holds: linear time and
// memory on any input. go-toml's own Unmarshal is not used: it matches
// names case-insensitively, and its key tracker searches linearly per key
// and its strict mode renders the whole document per unknown key, both
// quadratic on hostile input.

// keyPos is where the Vmfile (or Vmfile.local) sets a key or opens a table.
type keyPos struct {
	line  int
	local bool // in Vmfile.local
}

// itemKind is how a key or table was defined, for TOML's rule that each is
// defined once.
type itemKind uint8

const (
	kValue    itemKind = iota // key = value (scalars, arrays, inline tables): closed
	kDotted                   // a table made by a dotted key (a.b = 1 makes a)
	kImplicit                 // a table named on the way to a [header] ([a.b] names a)
	kTable                    // a table opened by its own [header]
	kTables                   // an array of tables ([[header]])
)

// item is a key or table of the document that devvm reads, with the Go
// value it decodes into.
type item struct {
	kind itemKind
	line int
	path string           // as errors name it: share[1].guest
	bare string           // the same without indices: share.guest
	t    reflect.Type     // the Go type of v
	v    reflect.Value    // settable
	kids map[string]*item // made on the first key: most tables have few
	last *item            // kTables: the element [headers] now refer to
}

type decoder struct {
	vf     *Vmfile
	file   string // the path errors name
	local  bool   // decoding Vmfile.local over the Vmfile
	data   []byte
	p      unstable.Parser
	nl     []int32 // offsets of the newlines, for line numbers
	root   *item
	cur    *item    // the table key/value lines go to
	resume int      // offset after the last complete expression
	flush  []func() // store map entries once decoded
	fields map[reflect.Type][]reflect.StructField
}

// decode reads data (the Vmfile, or Vmfile.local when local) into vf.
func decode(vf *Vmfile, file string, data []byte, local bool) (err error) {
	if len(data) > MaxFileSize {
		return tooBig(file, int64(len(data)))
	}
	defer func() {
		if r := recover(); r != nil {
			err = &Error{Path: file, Msg: fmt.Sprintf("%v (%v): please report this as a devvm bug with the file attached", errDecoderCrash, r)}
		}
	}()
	d := &decoder{vf: vf, file: file, local: local, data: data, fields: map[reflect.Type][]reflect.StructField{}}
	for i, c := range data {
		if c == '\n' {
			d.nl = append(d.nl, int32(i))
		}
	}
	d.root = &item{kind: kTable, t: vmfileType, v: reflect.ValueOf(vf).Elem()}
	d.cur = d.root
	if vf.index == nil {
		vf.index = map[string]keyPos{}
	}
	d.p.Reset(data)
	for d.p.NextExpression() {
		e := d.p.Expression()
		switch e.Kind {
		case unstable.KeyValue:
			err = d.keyValue(d.cur, e)
			d.resume = int(e.Raw.Offset + e.Raw.Length)
		case unstable.Table, unstable.ArrayTable:
			err = d.header(e)
		}
		if err != nil {
			return err
		}
	}
	if err := d.p.Error(); err != nil {
		return d.syntaxError(err)
	}
	for _, f := range d.flush {
		f()
	}
	return nil
}

var errDecoderCrash = errors.New("decoding this file crashed devvm")

// line returns the line of a node, or def when the node has no position
// (arrays).
func (d *decoder) line(n *unstable.Node, def int) int {
	if n.Raw.Length == 0 {
		return def
	}
	return d.lineAt(int(n.Raw.Offset))
}

func (d *decoder) lineAt(off int) int {
	return sort.Search(len(d.nl), func(i int) bool { return int(d.nl[i]) >= off }) + 1
}

func (d *decoder) errorf(path string, line int, format string, a ...any) *Error {
	return &Error{Path: d.file, Line: line, Key: path, Msg: fmt.Sprintf(format, a...)}
}

// record notes where a key is first set.
func (d *decoder) record(it *item) {
	if _, seen := d.vf.index[it.path]; !seen || d.local && d.overrides(it.bare) {
		d.vf.index[it.path] = keyPos{line: it.line, local: d.local}
	}
}

// overrides reports whether Vmfile.local sets bare, a key it may set or a
// key inside one (forward.host), as opposed to a table on the way (ssh).
func (d *decoder) overrides(bare string) bool {
	whole, _ := localKey(bare)
	return whole != ""
}

func joinKey(base, name string) string {
	if base == "" {
		return quoteKey(name)
	}
	return base + "." + quoteKey(name)
}

// child makes the item for key name of the table parent, checking that
// devvm reads it.
func (d *decoder) child(parent *item, name string, line int, kind itemKind) (*item, error) {
	it := &item{kind: kind, line: line, path: joinKey(parent.path, name), bare: joinKey(parent.bare, name)}
	switch parent.t.Kind() {
	case reflect.Struct:
		fields, ok := d.fields[parent.t]
		if !ok {
			fields = tomlFields(parent.t)
			d.fields[parent.t] = fields
		}
		i := fieldIndex(fields, name)
		if i < 0 {
			return nil, d.errorf(it.path, line, "%s", unknownKeyMessage(name, fields))
		}
		it.t = fields[i].Type
		it.v = parent.v.FieldByIndex(fields[i].Index)
	default: // a map: name is a key of the map
		it.t = parent.t.Elem()
		it.v = reflect.New(it.t).Elem()
		m, k := parent.v, reflect.ValueOf(name)
		d.flush = append(d.flush, func() { m.SetMapIndex(k, it.v) })
	}
	if d.local {
		if err := d.localChild(it); err != nil {
			return nil, err
		}
	}
	if parent.kids == nil {
		parent.kids = map[string]*item{}
	}
	parent.kids[name] = it
	d.record(it)
	return it, nil
}

// open makes it a table, if its Go type is one (a struct, a pointer to
// one, or a map). found says what the Vmfile wrote, for the error.
func (d *decoder) open(it *item, found string) error {
	switch t := it.t; {
	case t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct:
		if it.v.IsNil() {
			it.v.Set(reflect.New(t.Elem()))
		}
		it.v, it.t = it.v.Elem(), t.Elem()
	case t.Kind() == reflect.Struct:
	case t.Kind() == reflect.Map:
		if it.v.IsNil() {
			it.v.Set(reflect.MakeMap(t))
		}
	default:
		return d.wrongType(it, found)
	}
	return nil
}

// isTables reports whether t is a list of tables ([[share]]).
func isTables(t reflect.Type) bool {
	return t.Kind() == reflect.Slice && deref(t.Elem()).Kind() == reflect.Struct
}

// element makes the item for element i of the list it.
func (d *decoder) element(it *item, i, line int, kind itemKind) *item {
	e := &item{kind: kind, line: line, path: it.path + "[" + strconv.Itoa(i) + "]", bare: it.bare, t: it.t.Elem(), v: it.v.Index(i)}
	d.record(e)
	return e
}

func (d *decoder) wrongType(it *item, found string) *Error {
	return d.errorf(it.path, it.line, "wrong type: the value is %s, but this key takes %s", found, describeType(it.t))
}

// redefined explains TOML's rule that a key or table is defined once.
func (d *decoder) redefined(it *item, line int) *Error {
	how := map[itemKind]string{
		kValue:    "already set on line %d",
		kDotted:   "already a table, made by the dotted key on line %d",
		kImplicit: "already a table, named by the [header] on line %d",
		kTable:    "already a table, opened by the [header] on line %d",
		kTables:   "already an array of tables, opened by the [[header]] on line %d",
	}[it.kind]
	return d.errorf(it.path, line, "invalid TOML: "+how+"; TOML defines each key and table once", it.line)
}

// keyParts returns the names of a dotted key.
func keyParts(n *unstable.Node) []*unstable.Node {
	var parts []*unstable.Node
	for k := n.Key(); k.Next(); {
		parts = append(parts, k.Node())
	}
	return parts
}

// header handles [a.b] and [[a.b]].
func (d *decoder) header(e *unstable.Node) error {
	arr := e.Kind == unstable.ArrayTable
	parts := keyParts(e)
	last := parts[len(parts)-1]
	d.resume = int(last.Raw.Offset + last.Raw.Length)
	cur := d.root
	for i, k := range parts {
		name, line := string(k.Data), d.line(k, 0)
		final := i == len(parts)-1
		it, ok := cur.kids[name]
		var err error
		switch {
		case !ok && final && arr:
			if it, err = d.child(cur, name, line, kTables); err != nil {
				return err
			}
			if !isTables(it.t) {
				return d.wrongType(it, "an array of tables")
			}
		case !ok:
			kind := kImplicit
			if final {
				kind = kTable
			}
			if it, err = d.child(cur, name, line, kind); err == nil {
				err = d.open(it, "a table")
			}
		case final && arr:
			if it.kind != kTables {
				err = d.redefined(it, line)
			}
		case final:
			if it.kind != kImplicit {
				err = d.redefined(it, line)
			}
			it.kind = kTable
		case it.kind == kValue:
			err = d.redefined(it, line)
		}
		if err != nil {
			return err
		}
		switch {
		case final && arr:
			n := it.v.Len()
			it.v.Set(reflect.Append(it.v, reflect.Zero(it.t.Elem())))
			it.last = d.element(it, n, line, kTable)
			if err := d.open(it.last, "a table"); err != nil {
				return err
			}
			cur = it.last
		case it.kind == kTables:
			cur = it.last
		default:
			cur = it
		}
	}
	d.cur = cur
	return nil
}

// keyValue handles key = value in the table tbl.
func (d *decoder) keyValue(tbl *item, kv *unstable.Node) error {
	parts := keyParts(kv)
	cur := tbl
	for i, k := range parts {
		name, line := string(k.Data), d.line(k, 0)
		it, ok := cur.kids[name]
		var err error
		switch {
		case ok && (i == len(parts)-1 || it.kind != kDotted):
			return d.redefined(it, line)
		case ok:
		case i == len(parts)-1:
			if it, err = d.child(cur, name, line, kValue); err == nil {
				err = d.value(it, kv.Value())
			}
			return err
		default:
			if it, err = d.child(cur, name, line, kDotted); err == nil {
				err = d.open(it, "a table")
			}
		}
		if err != nil {
			return err
		}
		cur = it
	}
	return nil
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// tomlWords names the TOML type of a value node.
func tomlWords(k unstable.Kind) string {
	switch k {
	case unstable.String:
		return "a string"
	case unstable.Integer:
		return "an integer"
	case unstable.Float:
		return "a float"
	case unstable.Bool:
		return "a boolean"
	case unstable.Array:
		return "an array"
	case unstable.InlineTable:
		return "a table"
	}
	return "a date/time"
}

// valueKinds are the TOML types of the Go kinds the Vmfile uses; tables
// (structs, pointers to them, maps) take inline tables.
var valueKinds = map[reflect.Kind]unstable.Kind{reflect.String: unstable.String, reflect.Int: unstable.Integer,
	reflect.Bool: unstable.Bool, reflect.Slice: unstable.Array}

// value decodes the value node n into it.
func (d *decoder) value(it *item, n *unstable.Node) error {
	t := it.t
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		// Sizes and durations: strings, and numbers as written (so a
		// bare 2048 is MiB and a bare 5 is refused for lack of a unit).
		if n.Kind != unstable.String && n.Kind != unstable.Integer && n.Kind != unstable.Float {
			return d.wrongType(it, tomlWords(n.Kind))
		}
		text := n.Data
		if n.Kind != unstable.String {
			text = bytes.ReplaceAll(text, []byte("_"), nil)
		}
		if err := it.v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText(text); err != nil {
			return d.errorf(it.path, it.line, "%v", err)
		}
		return nil
	}
	want := valueKinds[t.Kind()]
	if want == unstable.Invalid {
		want = unstable.InlineTable
	}
	if n.Kind != want {
		return d.wrongType(it, tomlWords(n.Kind))
	}
	switch t.Kind() {
	case reflect.String:
		it.v.SetString(string(n.Data))
	case reflect.Bool:
		it.v.SetBool(string(n.Data) == "true")
	case reflect.Int:
		i, err := parseInt(n.Data)
		if err != nil || it.v.OverflowInt(i) {
			return d.errorf(it.path, it.line, "%s does not fit in a 64-bit integer", n.Data)
		}
		it.v.SetInt(i)
	case reflect.Slice:
		count := 0
		for c := n.Children(); c.Next(); {
			count++
		}
		it.v.Set(reflect.MakeSlice(t, count, count))
		i := 0
		for c := n.Children(); c.Next(); i++ {
			el := c.Node()
			if err := d.value(d.element(it, i, d.line(el, it.line), kValue), el); err != nil {
				return err
			}
		}
	default:
		if err := d.open(it, "a table"); err != nil {
			return err
		}
		return d.inline(it, n)
	}
	return nil
}

// inline decodes the key/values of the inline table n into the table it.
func (d *decoder) inline(it *item, n *unstable.Node) error {
	for c := n.Children(); c.Next(); {
		if err := d.keyValue(it, c.Node()); err != nil {
			return err
		}
	}
	return nil
}

// parseInt reads a TOML integer the parser has checked: 1_000, -5, 0x1F,
// 0o17, 0b101.
func parseInt(raw []byte) (int64, error) {
	s := strings.ReplaceAll(string(raw), "_", "")
	base := 10
	if len(s) > 2 && s[0] == '0' {
		base = map[byte]int{'x': 16, 'o': 8, 'b': 2}[s[1]]
		s = s[2:]
	}
	return strconv.ParseInt(s, base, 64)
}

// bareKeyRe matches a line that starts with a bare (dotted) key and '='.
var bareKeyRe = regexp.MustCompile(`^[ \t]*([A-Za-z0-9_-]+(?:[ \t]*\.[ \t]*[A-Za-z0-9_-]+)*)[ \t]*=`)

// syntaxError names the line of a parser error and, when the expression
// that failed starts with a plain key, that key.
func (d *decoder) syntaxError(err error) *Error {
	var pe *unstable.ParserError
	if !errors.As(err, &pe) {
		return &Error{Path: d.file, Msg: "invalid TOML: " + err.Error()}
	}
	e := &Error{Path: d.file, Msg: "invalid TOML: " + pe.Message}
	off := cap(d.data) - cap(pe.Highlight)
	if off < 0 || off > len(d.data) {
		return e
	}
	e.Line = d.lineAt(off)
	start := d.resume
	if d.resume > 0 {
		j := bytes.IndexByte(d.data[start:], '\n')
		if j < 0 {
			return e
		}
		start += j + 1
	}
	for start < len(d.data) {
		rest := d.data[start:]
		line := rest
		if j := bytes.IndexByte(rest, '\n'); j >= 0 {
			line = rest[:j+1]
		}
		if t := bytes.TrimLeft(line, " \t\r\n"); len(t) > 0 && t[0] != '#' || len(line) == len(rest) {
			break
		}
		start += len(line)
	}
	if start > off {
		return e
	}
	m := bareKeyRe.FindSubmatch(d.data[start:])
	if m == nil {
		return e
	}
	path := d.cur.path
	for _, name := range bytes.Split(m[1], []byte(".")) {
		path = joinKey(path, string(bytes.TrimSpace(name)))
	}
	e.Key = path
	return e
}

// quoteKey returns k as a TOML bare key when it is one, else quoted.
func quoteKey(k string) string {
	if k != "" && strings.Trim(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == "" {
		return k
	}
	return tomlString(k)
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
