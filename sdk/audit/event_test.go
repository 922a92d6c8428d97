package audit

import (
	"bytes"
	"flag"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vramward/vramward/sdk/plugintest"
)

var update = flag.Bool("update", false, "rewrite golden files")

// sampleFields makes a valid field set for a catalogue entry.
func sampleFields(sp Spec) []Field {
	var fs []Field
	for i, f := range sp.Fields {
		switch f.Kind {
		case KindString:
			fs = append(fs, Str(f.Name, "v-"+f.Name))
		case KindUint:
			fs = append(fs, Uint(f.Name, uint64(i)<<40))
		case KindInt:
			fs = append(fs, Int(f.Name, -int64(i)))
		case KindBool:
			fs = append(fs, Bool(f.Name, i%2 == 0))
		}
	}
	return fs
}

func TestNewEveryCatalogueType(t *testing.T) {
	// DESIGN.md's 21, and the witnesses' AuditCheckpointCosigned and
	// AuditCheckpointRefused.
	if n := len(Catalogue()); n != 24 {
		t.Fatalf("catalogue has %d types, want 24", n)
	}
	for _, sp := range Catalogue() {
		e, err := New(sp.Type, Actor{WorkerID: "w1"}, sampleFields(sp)...)
		if err != nil {
			t.Fatalf("%s: %v", sp.Type, err)
		}
		if e.Severity != sp.Severity {
			t.Errorf("%s: severity %s, catalogue says %s", sp.Type, e.Severity, sp.Severity)
		}
		if err := e.Validate(); err != nil {
			t.Errorf("%s: made event does not validate: %v", sp.Type, err)
		}
		line := e.AppendJSON(nil)
		back, err := ParseJSON(line)
		if err != nil {
			t.Fatalf("%s: parse own line: %v\n%s", sp.Type, err, line)
		}
		if !back.IsCanonical(line) {
			t.Errorf("%s: round trip changed the line", sp.Type)
		}
	}
}

func TestNewRejectsWrongFields(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fields []Field
		want   string
	}{
		{"missing", []Field{Str("shard_id", "s")}, `missing field "gpu_device"`},
		{"extra", []Field{Str("shard_id", "s"), Uint("gpu_device", 0), Str("note", "x")}, `unexpected field "note"`},
		{"wrong kind", []Field{Str("shard_id", "s"), Str("gpu_device", "0")}, `field "gpu_device": want uint, got string`},
		{"twice", []Field{Str("shard_id", "s"), Str("shard_id", "t"), Uint("gpu_device", 0)}, `field "shard_id" given twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(SealVerified, Actor{}, tc.fields...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %s", err, tc.want)
			}
		})
	}
	if _, err := New("NoSuchEvent", Actor{}); err == nil {
		t.Fatal("unknown type accepted")
	}
}

func TestNewSanitisesEveryString(t *testing.T) {
	e, err := New(PathTraversalAttempt, Actor{WorkerID: "w\n1", CorrelationID: "\x1b[2J"},
		Str("attempted_path", "../../etc/passwd\u202e"), Str("allowed_roots", "/models"))
	if err != nil {
		t.Fatal(err)
	}
	v, _ := e.Field("attempted_path")
	if v.String() != `../../etc/passwd\u202e` || e.Actor.WorkerID != `w\x0a1` || e.Actor.CorrelationID != `\x1b[2J` {
		t.Fatalf("not sanitised: %q %q %q", v.String(), e.Actor.WorkerID, e.Actor.CorrelationID)
	}
}

func goldenEvent() Event {
	e := Event{
		Seq: 42, ID: "0192f5a8-7c1e-7b6d-9f00-0123456789ab",
		Time: time.Date(2026, 11, 23, 1, 2, 3, 4000, time.UTC), Type: VramSealed, Severity: Info,
		ServiceID: "vramward/node-7",
		Actor:     Actor{WorkerID: "worker-1", SourceIP: "10.0.0.7", CorrelationID: "req \"quoted\" \\ back"},
		Fields: []Field{Str("backend", "emulated"), Str("digest", strings.Repeat("ab", 32)),
			Uint("gpu_device", 0), Str("shard_id", "llama-7b/0 – 日本"), Uint("vram_bytes", 18446744073709551615)},
		Chain: Chain{Epoch: 3, Prev: bytes.Repeat([]byte{0x11}, 32), Hash: bytes.Repeat([]byte{0xfe}, 32)},
	}
	return e
}

// TestGoldenLine pins the canonical encoding byte for byte: changing it
// breaks every existing trail's hashes.
func TestGoldenLine(t *testing.T) {
	e := goldenEvent()
	got := append(e.AppendJSON(nil), '\n')
	got = append(got, e.AppendHashInput(nil)...)
	got = append(got, '\n')
	plugintest.Golden(t, filepath.Join("testdata", "golden", "event.jsonl"), got, *update)
}

func TestParseJSONRejects(t *testing.T) {
	good := string(func() []byte { e := goldenEvent(); return e.AppendJSON(nil) }())
	for _, tc := range []struct{ name, line, want string }{
		{"not JSON", `{"seq":`, "not a JSON record"},
		{"unknown key", strings.Replace(good, `"seq":42,`, `"seq":42,"extra":1,`, 1), "unknown field"},
		{"float value", strings.Replace(good, `"gpu_device":0`, `"gpu_device":0.5`, 1), "want an integer"},
		{"object value", strings.Replace(good, `"gpu_device":0`, `"gpu_device":{}`, 1), "want a string, integer or bool"},
		{"null value", strings.Replace(good, `"gpu_device":0`, `"gpu_device":null`, 1), "want a string, integer or bool"},
		{"missing envelope key", strings.Replace(good, `"service_id":"vramward/node-7",`, ``, 1), "lacks an envelope key"},
		{"severity out of catalogue", strings.Replace(good, `"severity":"INFO"`, `"severity":"LOW"`, 1), "has severity INFO in the catalogue"},
		{"unknown severity", strings.Replace(good, `"severity":"INFO"`, `"severity":"LOUD"`, 1), "unknown severity"},
		{"short mac", strings.Replace(good, strings.Repeat("fe", 32), "fefe", 1), "want 64 hex digits"},
		{"bad time", strings.Replace(good, `2026-11-23T`, `2026-13-23T`, 1), "time"},
		{"trailing data", good + ` {}`, "trailing data"},
		{"bad field key", strings.Replace(good, `"backend"`, `"Back-End"`, 1), "invalid field key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseJSON([]byte(tc.line))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	if _, err := ParseJSON(bytes.Repeat([]byte(" "), MaxLineBytes+1)); err == nil {
		t.Fatal("oversized line accepted")
	}
}

func TestIsCanonicalCatchesSemanticNoOps(t *testing.T) {
	e := goldenEvent()
	line := e.AppendJSON(nil)
	respaced := bytes.Replace(line, []byte(`"seq":42,`), []byte(`"seq": 42, `), 1)
	back, err := ParseJSON(respaced)
	if err != nil {
		t.Fatal(err)
	}
	if back.IsCanonical(respaced) {
		t.Fatal("whitespace edit passed as canonical")
	}
	if !back.IsCanonical(line) {
		t.Fatal("parsed content differs from the original")
	}
}

// FuzzParseJSON: no input panics; whatever parses re-encodes to a line that
// parses to the same canonical bytes.
func FuzzParseJSON(f *testing.F) {
	e := goldenEvent()
	f.Add(e.AppendJSON(nil))
	f.Add([]byte(`{"seq":1}`))
	f.Add([]byte(`{"seq":1,"id":"","time":"2026-01-01T00:00:00Z","type":"X","severity":"INFO","service_id":"","actor":{},"fields":{"a":-1,"b":true},"chain":{}}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		ev, err := ParseJSON(line)
		if err != nil {
			return
		}
		again := ev.AppendJSON(nil)
		ev2, err := ParseJSON(again)
		if err != nil {
			t.Fatalf("re-encoded line does not parse: %v\n%s", err, again)
		}
		if !ev2.IsCanonical(again) {
			t.Fatalf("canonical form not stable:\n%s", again)
		}
	})
}

func TestResendWindowEvictsOldest(t *testing.T) {
	w := NewResendWindow(2)
	w.Add(1, []byte{1})
	w.Add(2, []byte{2})
	w.Add(3, []byte{3})
	if w.Has(1, []byte{1}) || !w.Has(2, []byte{2}) || !w.Has(3, []byte{3}) || w.Has(3, []byte{9}) {
		t.Fatal("window does not keep exactly the last two seqs with their hashes")
	}
	w.Add(4, nil) // no hash: not remembered
	if w.Has(4, nil) {
		t.Fatal("remembered an event without a hash")
	}
}
