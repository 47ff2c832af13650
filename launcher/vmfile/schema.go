package vmfile

import (
	"encoding"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// The decoder matches keys case-insensitively (`Memory` fills memory),
// ignores some type mismatches (`machines = 5` under [microvm]) and only
// lists unknown keys without lines. checkKeys walks every key the file
// sets against the Go types instead: exact names, TOML types that fit.

var (
	vmfileType    = reflect.TypeFor[Vmfile]()
	unmarshalText = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// tomlFields lists the TOML keys of a struct type with their fields.
func tomlFields(t reflect.Type) []reflect.StructField {
	var out []reflect.StructField
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		f.Name = name
		out = append(out, f)
	}
	return out
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// schemaType finds the Go type a key (its names, without indices) decodes
// into. Problems are reported as a message about the name at index bad.
func schemaWalk(names []string) (t reflect.Type, bad int, msg string) {
	t = vmfileType
	for i, name := range names {
		t = deref(t)
		if t.Kind() == reflect.Slice && deref(t.Elem()).Kind() == reflect.Struct {
			t = deref(t.Elem())
		}
		switch t.Kind() {
		case reflect.Struct:
			fields := tomlFields(t)
			var found *reflect.StructField
			for j := range fields {
				if fields[j].Name == name {
					found = &fields[j]
				}
			}
			if found == nil {
				return nil, i, unknownKeyMessage(name, fields)
			}
			t = found.Type
		case reflect.Map:
			t = t.Elem()
		default:
			return nil, i, "unknown key: the key before it takes a single value, not a table"
		}
	}
	return t, -1, ""
}

func schemaType(names []string) (reflect.Type, bool) {
	if len(names) == 0 {
		return nil, false
	}
	t, bad, _ := schemaWalk(names)
	return t, bad < 0
}

func unknownKeyMessage(name string, fields []reflect.StructField) string {
	var known []string
	for _, f := range fields {
		known = append(known, f.Name)
	}
	for _, k := range known {
		if strings.EqualFold(k, name) {
			return fmt.Sprintf("unknown key: keys are case-sensitive; write %q", k)
		}
	}
	for _, k := range known {
		if editDistance(k, name) <= 2 {
			return fmt.Sprintf("unknown key: did you mean %q? (docs/vmfile.md lists every key)", k)
		}
	}
	return fmt.Sprintf("unknown key: devvm reads only %s here (docs/vmfile.md lists every key)", strings.Join(known, ", "))
}

// editDistance is the Levenshtein distance of two short keys.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// tomlTypes lists the TOML types (as MetaData.Type names them) a Go type
// accepts; nil means the decoder checks it (text unmarshalers).
func tomlTypes(t reflect.Type) []string {
	if reflect.PointerTo(t).Implements(unmarshalText) {
		return nil
	}
	t = deref(t)
	switch t.Kind() {
	case reflect.String:
		return []string{"String"}
	case reflect.Int, reflect.Int64, reflect.Int32:
		return []string{"Integer"}
	case reflect.Bool:
		return []string{"Bool"}
	case reflect.Struct, reflect.Map:
		return []string{"Hash"}
	case reflect.Slice:
		if deref(t.Elem()).Kind() == reflect.Struct {
			return []string{"ArrayHash", "Array"}
		}
		return []string{"Array"}
	}
	return nil
}

// describeType says in TOML words what a key of Go type t takes.
func describeType(t reflect.Type) string {
	switch deref(t) {
	case reflect.TypeFor[Size]():
		return `a size like "2G" or "512M"`
	case reflect.TypeFor[Duration]():
		return `a duration like "90s" or "10m"`
	}
	t = deref(t)
	switch t.Kind() {
	case reflect.String:
		return "a string in quotes"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "an integer"
	case reflect.Bool:
		return "true or false"
	case reflect.Struct, reflect.Map:
		return "a table"
	case reflect.Slice:
		if deref(t.Elem()).Kind() == reflect.Struct {
			return "tables ([[name]] blocks)"
		}
		return "an array of strings"
	}
	return t.String()
}

var tomlTypeWords = map[string]string{
	"String": "a string", "Integer": "an integer", "Float": "a float", "Bool": "a boolean",
	"Datetime": "a date/time", "DatetimeLocal": "a date/time", "Date": "a date", "Time": "a time",
	"Array": "an array", "Hash": "a table", "ArrayHash": "an array of tables",
}

// checkKeys refuses keys devvm does not read and values of the wrong type,
// in the order the file sets them.
func (v *Vmfile) checkKeys(md toml.MetaData) error {
	for _, k := range md.Keys() {
		t, bad, msg := schemaWalk(k)
		if bad >= 0 {
			key, line := v.locate(k[:bad+1], "")
			return &Error{Path: v.Path, Line: line, Key: key, Msg: msg}
		}
		want := tomlTypes(t)
		got := md.Type(k...)
		if want == nil || got == "" || slices.Contains(want, got) {
			continue
		}
		found := tomlTypeWords[got]
		if found == "" {
			found = strings.ToLower(got)
		}
		key, line := v.locate(k, got)
		return &Error{Path: v.Path, Line: line, Key: key,
			Msg: fmt.Sprintf("wrong type: the value is %s, but this key takes %s", found, describeType(t))}
	}
	if und := md.Undecoded(); len(und) > 0 {
		key, line := v.locate(und[0], "")
		return &Error{Path: v.Path, Line: line, Key: key, Msg: "unknown key (docs/vmfile.md lists every key)"}
	}
	return nil
}

// locate names a decoder key (no indices) by its first occurrence with a
// value of TOML type kind ("" for any).
func (v *Vmfile) locate(names []string, kind string) (string, int) {
	if e, ok := v.keys().find(names, kind); ok {
		return e.path, e.line
	}
	return keyPath(namesSegs(names)...), 0
}
