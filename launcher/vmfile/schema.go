package vmfile

import (
	"fmt"
	"reflect"
	"strings"
)

var vmfileType = reflect.TypeFor[Vmfile]()

// tomlFields lists the TOML keys of a struct type with their fields (Name
// is the TOML key).
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

// fieldIndex returns the index of the field with TOML key name (exactly),
// or -1.
func fieldIndex(fields []reflect.StructField, name string) int {
	for i, f := range fields {
		if f.Name == name {
			return i
		}
	}
	return -1
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
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
