package schema

import (
	"strings"
	"testing"
	"time"
)

var testSchema = Schema{
	{Name: "path", Type: String, Required: true},
	{Name: "size", Type: Int, Default: int64(10)},
	{Name: "on", Type: Bool},
	{Name: "every", Type: Duration, Default: time.Second},
	{Name: "roots", Type: StringList},
}

func TestDecodeJSON(t *testing.T) {
	v, err := testSchema.Decode([]byte(`{"path":"/a","on":true,"roots":["/m","/n"],"every":"250ms"}`))
	if err != nil {
		t.Fatal(err)
	}
	if v.String("path") != "/a" || v.Int("size") != 10 || !v.Bool("on") || v.Duration("every") != 250*time.Millisecond ||
		strings.Join(v.StringList("roots"), ",") != "/m,/n" {
		t.Fatalf("decoded %s", v.JSON())
	}
	if again, err := testSchema.Decode(v.JSON()); err != nil || string(again.JSON()) != string(v.JSON()) {
		t.Fatalf("JSON round trip: %v %s", err, again.JSON())
	}
	for _, tc := range []struct{ in, want string }{
		{`{}`, "path: required attribute is missing"},
		{`{"path":"/a","pth":1}`, `pth: unsupported attribute (did you mean "path"?)`},
		{`{"path":1}`, "path: want string, got a number"},
		{`{"path":"/a","size":1.5}`, "size: want a whole number, got 1.5"},
		{`{"path":"/a","size":"9"}`, "size: want int, got a string"},
		{`{"path":"/a","every":"soon"}`, `every: want a duration such as "500ms" or "15m", got "soon"`},
		{`{"path":"/a","every":"-1s"}`, `every: duration "-1s" is negative`},
		{`{"path":"/a","roots":["/m",3]}`, "roots: element 1: want a string, got a number"},
		{`[1]`, "(config): not a JSON object"},
		{`{"path":null}`, "path: want string, got null"},
	} {
		_, err := testSchema.Decode([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Decode(%s) = %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestCheckRejectsBadSchemas(t *testing.T) {
	for _, s := range []Schema{
		{{Name: "Path", Type: String}},
		{{Name: "a", Type: String}, {Name: "a", Type: Int}},
		{{Name: "a", Type: 99}},
		{{Name: "a", Type: Int, Default: "ten"}},
		{{Name: "a", Type: Int, Required: true, Default: int64(1)}},
	} {
		if err := s.Check(); err == nil {
			t.Errorf("Check(%+v) passed", s)
		}
	}
	back, err := FromProto(ToProto(testSchema))
	if err != nil || len(back) != len(testSchema) || back[3].Default != time.Second {
		t.Fatalf("proto round trip: %v %+v", err, back)
	}
}

// FuzzDecode: a config payload received over RPC never panics the decoder,
// and whatever it accepts re-encodes to a payload it accepts the same way.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"path":"/a","size":3,"roots":["x"]}`))
	f.Add([]byte(`{"every":"1h"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := testSchema.Decode(data)
		if err != nil {
			return
		}
		again, err := testSchema.Decode(v.JSON())
		if err != nil || string(again.JSON()) != string(v.JSON()) {
			t.Fatalf("re-decode of %s: %v", v.JSON(), err)
		}
	})
}
