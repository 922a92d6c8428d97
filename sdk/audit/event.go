// Package audit is what an audit-sink author builds on: the event model and
// its catalogue, the record encoding (one JSON line per event, the bytes the
// chain covers), the Sink interface a plugin implements, and Serve, which
// enforces the flush and shutdown guarantees around any Sink. The host's side
// of the same RPC, which counts every failure in Prometheus metrics, is
// package sinkclient; untrusted strings are made safe by package sanitize.
package audit

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/vramward/vramward/sdk/sanitize"
)

// Event is one audit record. The host fills Seq, ServiceID and Chain before
// fan-out, so every sink holds the same chained record.
type Event struct {
	Seq       uint64
	ID        string
	Time      time.Time
	Type      Type
	Severity  Severity
	ServiceID string
	Actor     Actor
	// Fields are sorted by key and unique.
	Fields []Field
	Chain  Chain
}

// Actor says on whose behalf the event happened.
type Actor struct {
	WorkerID      string
	SourceIP      string
	CorrelationID string
}

// Chain links a record to the one before it and names the signing epoch
// whose checkpoints cover it; see package chain.
type Chain struct {
	Epoch uint64
	// Prev is the hash of the previous record, nil for the first record.
	Prev []byte
	// Hash is this record's RFC 6962 leaf hash: SHA-256 of 0x00 and its
	// hash input (AppendHashInput). It needs no secret to check; the
	// signed checkpoints over the tree of these hashes are what vouch.
	Hash []byte
}

// Field is one typed value of an event.
type Field struct {
	Key   string
	Value Value
}

// Value holds one of a string, an int64, a uint64 or a bool.
type Value struct {
	kind Kind
	str  string
	num  uint64 // int64 values are stored as their two's complement
}

// Str makes a string field; the value is sanitised when the event is made.
func Str(key, v string) Field { return Field{key, Value{kind: KindString, str: v}} }

// Int makes a signed integer field.
func Int(key string, v int64) Field { return Field{key, Value{kind: KindInt, num: uint64(v)}} }

// Uint makes an unsigned integer field.
func Uint(key string, v uint64) Field { return Field{key, Value{kind: KindUint, num: v}} }

// Bool makes a boolean field.
func Bool(key string, v bool) Field {
	var n uint64
	if v {
		n = 1
	}
	return Field{key, Value{kind: KindBool, num: n}}
}

// Kind returns the kind of value held.
func (v Value) Kind() Kind { return v.kind }

// String returns the string held, or "" for other kinds.
func (v Value) String() string { return v.str }

// Int returns the int64 held (KindInt), or the uint64 converted.
func (v Value) Int() int64 { return int64(v.num) }

// Uint returns the uint64 held (KindUint).
func (v Value) Uint() uint64 { return v.num }

// Bool returns the bool held (KindBool).
func (v Value) Bool() bool { return v.num != 0 }

// Equal compares two values as the canonical encoding sees them: a
// non-negative KindInt equals the same KindUint (JSON has one number type).
func (v Value) Equal(o Value) bool {
	if v.numeric() && o.numeric() {
		if (v.kind == KindInt && int64(v.num) < 0) || (o.kind == KindInt && int64(o.num) < 0) {
			return v.kind == o.kind && v.num == o.num
		}
		return v.num == o.num
	}
	return v.kind == o.kind && v.str == o.str && v.num == o.num
}

func (v Value) numeric() bool { return v.kind == KindInt || v.kind == KindUint }

// Field returns the value of the field called key.
func (e *Event) Field(key string) (Value, bool) {
	i := sort.Search(len(e.Fields), func(i int) bool { return e.Fields[i].Key >= key })
	if i < len(e.Fields) && e.Fields[i].Key == key {
		return e.Fields[i].Value, true
	}
	return Value{}, false
}

// New makes an event of a catalogue type: the severity comes from the
// catalogue, every string is sanitised, and the fields must be exactly the
// type's fields with the right kinds. Seq, ServiceID and Chain are left for
// the host's bus to fill.
func New(t Type, actor Actor, fields ...Field) (Event, error) {
	spec, ok := Lookup(t)
	if !ok {
		return Event{}, fmt.Errorf("audit: unknown event type %q", t)
	}
	e := Event{
		ID:       uuid.Must(uuid.NewV7()).String(),
		Time:     time.Now().UTC(),
		Type:     t,
		Severity: spec.Severity,
		Actor: Actor{
			WorkerID:      sanitize.String(actor.WorkerID),
			SourceIP:      sanitize.String(actor.SourceIP),
			CorrelationID: sanitize.String(actor.CorrelationID),
		},
		Fields: make([]Field, len(fields)),
	}
	copy(e.Fields, fields)
	for i := range e.Fields {
		if e.Fields[i].Value.kind == KindString {
			e.Fields[i].Value.str = sanitize.String(e.Fields[i].Value.str)
		}
	}
	sort.SliceStable(e.Fields, func(i, j int) bool { return e.Fields[i].Key < e.Fields[j].Key })
	if err := checkFields(spec, e.Fields); err != nil {
		return Event{}, fmt.Errorf("audit: new %s: %w", t, err)
	}
	return e, nil
}

func checkFields(spec Spec, fields []Field) error {
	var errs []error
	want := spec.Fields // sorted by name, like fields
	i, j := 0, 0
	for i < len(want) || j < len(fields) {
		switch {
		case j == len(fields) || (i < len(want) && want[i].Name < fields[j].Key):
			errs = append(errs, fmt.Errorf("missing field %q", want[i].Name))
			i++
		case i == len(want) || fields[j].Key < want[i].Name:
			errs = append(errs, fmt.Errorf("unexpected field %q", fields[j].Key))
			j++
		default:
			if got := fields[j].Value.kind; got != want[i].Kind {
				errs = append(errs, fmt.Errorf("field %q: want %s, got %s", want[i].Name, want[i].Kind, got))
			}
			if j+1 < len(fields) && fields[j+1].Key == fields[j].Key {
				errs = append(errs, fmt.Errorf("field %q given twice", fields[j].Key))
				j++
			}
			i++
			j++
		}
	}
	return errors.Join(errs...)
}

// Limits on what an event may hold. They bound what a sink accepts over RPC
// and what a trail reader accepts from a file.
const (
	MaxFields   = 64
	MaxKeyBytes = 64
	MaxIDBytes  = 128
)

// validName reports whether s is a non-empty identifier of at most
// MaxKeyBytes: a letter then letters, digits and underscores; upper case
// letters only where upper is set (type names are CamelCase, keys snake_case).
func validName(s string, upper bool) bool {
	if len(s) == 0 || len(s) > MaxKeyBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z':
		case upper && c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '_'):
		default:
			return false
		}
	}
	return true
}

// Validate checks an event received from elsewhere (an RPC, a file): shape,
// limits, and for a catalogue type its fixed severity. It does not check the
// chain; package chain does.
func (e *Event) Validate() error {
	if !e.Severity.Valid() {
		return fmt.Errorf("seq %d: invalid severity %d", e.Seq, uint8(e.Severity))
	}
	if !validName(string(e.Type), true) {
		return fmt.Errorf("seq %d: invalid type %q", e.Seq, sanitize.String(string(e.Type)))
	}
	if spec, ok := Lookup(e.Type); ok && spec.Severity != e.Severity {
		return fmt.Errorf("seq %d: %s has severity %s in the catalogue, got %s", e.Seq, e.Type, spec.Severity, e.Severity)
	}
	if len(e.ID) > MaxIDBytes {
		return fmt.Errorf("seq %d: id longer than %d bytes", e.Seq, MaxIDBytes)
	}
	for _, str := range []string{e.ServiceID, e.Actor.WorkerID, e.Actor.SourceIP, e.Actor.CorrelationID} {
		if len(str) > sanitize.MaxStringBytes {
			return fmt.Errorf("seq %d: actor or service string longer than %d bytes", e.Seq, sanitize.MaxStringBytes)
		}
	}
	if len(e.Fields) > MaxFields {
		return fmt.Errorf("seq %d: %d fields, at most %d", e.Seq, len(e.Fields), MaxFields)
	}
	for i, f := range e.Fields {
		if !validName(f.Key, false) {
			return fmt.Errorf("seq %d: invalid field key %q", e.Seq, sanitize.String(f.Key))
		}
		if i > 0 && e.Fields[i-1].Key >= f.Key {
			return fmt.Errorf("seq %d: fields not sorted or not unique at %q", e.Seq, f.Key)
		}
		if f.Value.kind < KindString || f.Value.kind > KindBool {
			return fmt.Errorf("seq %d: field %q has no value", e.Seq, f.Key)
		}
		if len(f.Value.str) > sanitize.MaxStringBytes {
			return fmt.Errorf("seq %d: field %q longer than %d bytes", e.Seq, f.Key, sanitize.MaxStringBytes)
		}
	}
	if len(e.Chain.Prev) != 0 && len(e.Chain.Prev) != 32 || len(e.Chain.Hash) != 0 && len(e.Chain.Hash) != 32 {
		return fmt.Errorf("seq %d: chain hashes must be 32 bytes", e.Seq)
	}
	return nil
}
