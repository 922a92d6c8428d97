// Package schema describes the configuration block a plugin accepts. A plugin
// publishes its Schema through its Info RPC; the host decodes the plugin's HCL
// `config {}` block against it (so a wrong key or type is reported at its
// file:line:col like any host key) and sends the result as JSON, which the
// SDK checks again on the plugin side before the plugin sees it.
package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Type is the type of one attribute.
type Type int

const (
	String Type = iota + 1
	Int
	Bool
	// Duration is written as a Go duration string ("250ms", "15m").
	Duration
	StringList
)

func (t Type) String() string {
	switch t {
	case String:
		return "string"
	case Int:
		return "int"
	case Bool:
		return "bool"
	case Duration:
		return "duration"
	case StringList:
		return "list(string)"
	}
	return fmt.Sprintf("type(%d)", int(t))
}

// Attribute is one key of a configuration block.
type Attribute struct {
	Name     string
	Type     Type
	Required bool
	// Default is used when the key is absent. Its Go type follows Type:
	// string, int64, bool, time.Duration or []string. Nil means no default,
	// and the key is then absent from the decoded Values.
	Default     any
	Description string
	// Path says that a String value names a file, so the host checks it
	// before Configure and `vramward validate` checks it without starting
	// anything: a directory where a file is written is refused at once.
	Path PathKind
}

// PathKind says what a string attribute names on the file system.
type PathKind int

const (
	NotAPath PathKind = iota
	// WrittenFile is a file the plugin creates or appends to: absent, or
	// a regular file (not a directory, not a symbolic link), in a
	// directory that exists (not writable by group or others) or can be
	// made. For an audit sink it is also where its copy of the trail is,
	// one record line per line: the host gives it checkpoints at once and
	// reads its tail after a crash.
	WrittenFile
	// ReadFile is a file the plugin reads: it must be a regular file.
	ReadFile
)

// Schema is a plugin's whole configuration block.
type Schema []Attribute

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// Check reports a schema that a plugin author got wrong: bad or repeated
// names, unknown types, or defaults of the wrong type.
func (s Schema) Check() error {
	seen := make(map[string]bool, len(s))
	for _, a := range s {
		if !nameRE.MatchString(a.Name) {
			return fmt.Errorf("schema: attribute name %q must match %s", a.Name, nameRE)
		}
		if seen[a.Name] {
			return fmt.Errorf("schema: attribute %q declared twice", a.Name)
		}
		seen[a.Name] = true
		if a.Type < String || a.Type > StringList {
			return fmt.Errorf("schema: attribute %q has unknown type %d", a.Name, int(a.Type))
		}
		if a.Path < NotAPath || a.Path > ReadFile || (a.Path != NotAPath && a.Type != String) {
			return fmt.Errorf("schema: attribute %q: path kind %d needs a string attribute", a.Name, int(a.Path))
		}
		if a.Default != nil {
			if a.Required {
				return fmt.Errorf("schema: attribute %q is required and has a default", a.Name)
			}
			if _, err := a.Type.coerce(a.Default); err != nil {
				return fmt.Errorf("schema: default of attribute %q: %w", a.Name, err)
			}
		}
	}
	return nil
}

// Lookup returns the attribute called name.
func (s Schema) Lookup(name string) (Attribute, bool) {
	for _, a := range s {
		if a.Name == name {
			return a, true
		}
	}
	return Attribute{}, false
}

// FieldError is a problem with one attribute's value. It crosses the RPC
// boundary as a gRPC BadRequest field violation, so the host can point at the
// attribute's position in the config file.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Msg) }

// Errors collects every FieldError of one decode, so that all of them are
// reported at once.
type Errors []*FieldError

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

// FieldErrors extracts the field errors held in err, if any.
func FieldErrors(err error) []*FieldError {
	var es Errors
	if errors.As(err, &es) {
		return es
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		return []*FieldError{fe}
	}
	return nil
}

// Values is a decoded configuration block with defaults applied.
type Values struct {
	m map[string]any
}

// Has reports whether name has a value (given or defaulted).
func (v Values) Has(name string) bool { _, ok := v.m[name]; return ok }

// String returns a String attribute's value, or "" when absent.
func (v Values) String(name string) string { s, _ := v.m[name].(string); return s }

// Int returns an Int attribute's value, or 0 when absent.
func (v Values) Int(name string) int64 { i, _ := v.m[name].(int64); return i }

// Bool returns a Bool attribute's value, or false when absent.
func (v Values) Bool(name string) bool { b, _ := v.m[name].(bool); return b }

// Duration returns a Duration attribute's value, or 0 when absent.
func (v Values) Duration(name string) time.Duration { d, _ := v.m[name].(time.Duration); return d }

// StringList returns a StringList attribute's value, or nil when absent.
func (v Values) StringList(name string) []string {
	l, _ := v.m[name].([]string)
	return append([]string(nil), l...)
}

// JSON encodes the values in the wire form Decode accepts.
func (v Values) JSON() []byte {
	out := make(map[string]any, len(v.m))
	for k, val := range v.m {
		if d, ok := val.(time.Duration); ok {
			out[k] = d.String()
			continue
		}
		out[k] = val
	}
	b, err := json.Marshal(out)
	if err != nil {
		// Values only ever holds strings, int64s, bools and []string.
		panic(fmt.Sprintf("schema: encode values: %v", err))
	}
	return b
}

// Decode checks a JSON configuration object against the schema and applies
// defaults. Every problem is reported, as Errors.
func (s Schema) Decode(configJSON []byte) (Values, error) {
	raw := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(configJSON)) > 0 {
		if err := json.Unmarshal(configJSON, &raw); err != nil {
			return Values{}, Errors{{Field: "(config)", Msg: fmt.Sprintf("not a JSON object: %v", err)}}
		}
	}
	var errs Errors
	vals := make(map[string]any, len(s))
	names := make([]string, 0, len(raw))
	for k := range raw {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		a, ok := s.Lookup(k)
		if !ok {
			errs = append(errs, &FieldError{Field: k, Msg: "unsupported attribute" + s.suggest(k)})
			continue
		}
		v, err := a.Type.decodeJSON(raw[k])
		if err != nil {
			errs = append(errs, &FieldError{Field: k, Msg: err.Error()})
			continue
		}
		vals[k] = v
	}
	for _, a := range s {
		if _, ok := vals[a.Name]; ok {
			continue
		}
		if _, given := raw[a.Name]; given {
			continue // already reported
		}
		if a.Required {
			errs = append(errs, &FieldError{Field: a.Name, Msg: "required attribute is missing"})
			continue
		}
		if a.Default != nil {
			d, _ := a.Type.coerce(a.Default) // Check has vetted defaults
			vals[a.Name] = d
		}
	}
	if len(errs) > 0 {
		return Values{}, errs
	}
	return Values{m: vals}, nil
}

// suggest names the closest attribute, for typos.
func (s Schema) suggest(name string) string {
	best, bestD := "", 3
	for _, a := range s {
		if d := editDistance(name, a.Name); d < bestD {
			best, bestD = a.Name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
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

func (t Type) decodeJSON(raw json.RawMessage) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("invalid JSON: %v", err)
	}
	return t.coerce(v)
}

// coerce turns a decoded JSON value or a Go default into the attribute's Go
// type, refusing anything that would need a lossy conversion.
func (t Type) coerce(v any) (any, error) {
	switch t {
	case String:
		if s, ok := v.(string); ok {
			return s, nil
		}
	case Int:
		switch n := v.(type) {
		case json.Number:
			i, err := n.Int64()
			if err != nil {
				return nil, fmt.Errorf("want a whole number, got %s", n)
			}
			return i, nil
		case int:
			return int64(n), nil
		case int64:
			return n, nil
		}
	case Bool:
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case Duration:
		switch d := v.(type) {
		case time.Duration:
			return d, nil
		case string:
			parsed, err := time.ParseDuration(d)
			if err != nil {
				return nil, fmt.Errorf("want a duration such as \"500ms\" or \"15m\", got %q", d)
			}
			if parsed < 0 {
				return nil, fmt.Errorf("duration %q is negative", d)
			}
			return parsed, nil
		}
	case StringList:
		switch l := v.(type) {
		case []string:
			return append([]string(nil), l...), nil
		case []any:
			out := make([]string, len(l))
			for i, e := range l {
				s, ok := e.(string)
				if !ok {
					return nil, fmt.Errorf("element %d: want a string, got %s", i, describe(e))
				}
				out[i] = s
			}
			return out, nil
		}
	}
	return nil, fmt.Errorf("want %s, got %s", t, describe(v))
}

func describe(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number, int, int64, float64:
		return "a number"
	case bool:
		return "a bool"
	case []any, []string:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
