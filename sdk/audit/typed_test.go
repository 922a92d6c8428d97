package audit

import (
	"reflect"
	"strings"
	"testing"
)

// fill gives every field of f's type a value of its own kind, different
// per field, with a negative int.
func fill(f Fields) Fields {
	v := reflect.New(reflect.TypeOf(f)).Elem()
	for i := 0; i < v.NumField(); i++ {
		switch fv := v.Field(i); fv.Kind() {
		case reflect.String:
			fv.SetString("v" + strings.Repeat("x", i))
		case reflect.Int64:
			fv.SetInt(-int64(i) - 7)
		case reflect.Uint64:
			fv.SetUint(uint64(i) + 1<<40)
		case reflect.Bool:
			fv.SetBool(true)
		}
	}
	return v.Interface().(Fields)
}

// Every catalogue type: Make gives an event the catalogue accepts, and
// its record, written and read back as a trail reader reads it, decodes
// into the same fields; an event of another type, or lacking a field, is
// refused by name.
func TestTypedFieldsRoundTrip(t *testing.T) {
	if len(typed) != len(Catalogue()) || len(typed) != 24 {
		t.Fatalf("%d typed, %d in the catalogue", len(typed), len(Catalogue()))
	}
	for typ, zero := range typed {
		want := fill(zero)
		e, err := Make(Actor{}, want)
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		back, err := ParseJSON(e.AppendJSON(nil))
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		got := reflect.New(reflect.TypeOf(zero))
		if err := Decode(&back, got.Interface().(Fields)); err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if !reflect.DeepEqual(got.Elem().Interface(), want) {
			t.Fatalf("%s: decoded %+v, made %+v", typ, got.Elem().Interface(), want)
		}
	}
	e, _ := Make(Actor{}, SealVerifiedFields{ShardID: "s"})
	var ck AuditCheckpointFields
	if err := Decode(&e, &ck); err == nil || !strings.Contains(err.Error(), "not AuditCheckpoint") {
		t.Fatalf("another type decoded: %v", err)
	}
	e.Fields = e.Fields[:1]
	var sv SealVerifiedFields
	if err := Decode(&e, &sv); err == nil || !strings.Contains(err.Error(), `"shard_id"`) {
		t.Fatalf("a missing field decoded: %v", err)
	}
}
