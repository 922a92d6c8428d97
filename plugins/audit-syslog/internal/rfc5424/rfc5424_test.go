package rfc5424

import (
	"strconv"
	"strings"
	"testing"
	"time"

	syslog "github.com/leodido/go-syslog/v4"
	parser "github.com/leodido/go-syslog/v4/rfc5424"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/sanitize"
)

// Hostile values: quotes, ']', backslashes, newlines, escapes, bidi
// overrides, non-ASCII.
const hostile = "a\"b]c\\d\ne\x1b[31m\u202e\u00e9\u4e2d\U0001F600 end"

func event(t testing.TB, typ audit.Type, fields ...audit.Field) audit.Event {
	t.Helper()
	e, err := audit.New(typ, audit.Actor{WorkerID: "node-" + hostile, CorrelationID: "corr]\"\\"}, fields...)
	if err != nil {
		t.Fatal(err)
	}
	e.Seq = 42
	e.Time = time.Date(2026, 11, 23, 1, 2, 3, 456789123, time.UTC)
	e.Chain = audit.Chain{Epoch: 3, Prev: make([]byte, 32), Hash: append([]byte{0xde, 0xad, 0xbe, 0xef}, make([]byte, 28)...)}
	return e
}

func header(t testing.TB) Header {
	h, err := NewHeader("auth", "gpu-node-1", "vramward", "1234", "vramward@32473")
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// Parse reads a message with a real RFC 5424 parser in strict mode.
func Parse(t testing.TB, msg []byte) *parser.SyslogMessage {
	t.Helper()
	m, err := parser.NewParser(parser.WithCompliantMsg()).Parse(msg)
	if err != nil {
		t.Fatalf("not RFC 5424: %v\n%q", err, msg)
	}
	return m.(*parser.SyslogMessage)
}

func TestFieldByField(t *testing.T) {
	h := header(t)
	e := event(t, audit.PathTraversalAttempt, audit.Str("attempted_path", "/etc/"+hostile), audit.Str("allowed_roots", "/models"))
	msg, short := h.Message(nil, &e, e.AppendJSON(nil), 8192)
	if short {
		t.Fatal("shortened")
	}
	m := Parse(t, msg)
	if *m.Facility != 4 || *m.Severity != 2 || *m.Priority != 34 || m.Version != 1 {
		t.Errorf("facility %d severity %d priority %d version %d", *m.Facility, *m.Severity, *m.Priority, m.Version)
	}
	if !m.Timestamp.Equal(e.Time.Truncate(time.Microsecond)) {
		t.Errorf("timestamp %v", m.Timestamp)
	}
	if *m.Hostname != "gpu-node-1" || *m.Appname != "vramward" || *m.ProcID != "1234" || *m.MsgID != "PathTraversalAttempt" {
		t.Errorf("header %q %q %q %q", *m.Hostname, *m.Appname, *m.ProcID, *m.MsgID)
	}
	sd := (*m.StructuredData)["vramward@32473"]
	want := map[string]string{"seq": "42", "severity": "CRITICAL", "worker_id": e.Actor.WorkerID,
		"correlation_id": e.Actor.CorrelationID, "epoch": "3", "hash": "deadbeef" + strings.Repeat("00", 28)}
	for k, v := range want {
		if sd[k] != v {
			t.Errorf("SD %s = %q, want %q", k, sd[k], v)
		}
	}
	// MSG is the event's canonical record, which parses back to the event.
	body := strings.TrimPrefix(*m.Message, bom)
	if body != string(e.AppendJSON(nil)) {
		t.Fatalf("MSG %q", body)
	}
	got, err := audit.ParseJSON([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := got.Field("attempted_path"); v.String() != "/etc/"+sanitize.String(hostile) {
		t.Errorf("attempted_path %q", v.String())
	}
}

// Values that reach the SD unsanitised (control characters) are escaped so
// the message stays one line and parses.
func TestControlCharactersInSD(t *testing.T) {
	h := header(t)
	e := event(t, audit.HostStarted, audit.Str("version", "1"), audit.Str("config_sha256", "x"))
	e.Actor.WorkerID = "a\nb\x00c\x7fd\u0085e"
	msg, _ := h.Message(nil, &e, e.AppendJSON(nil), 8192)
	sdPart, _, _ := strings.Cut(string(msg), bom)
	if strings.ContainsAny(sdPart, "\n\x00\x7f\u0085") || strings.ContainsAny(string(msg), "\n\x00") {
		t.Fatalf("raw control characters in %q", msg)
	}
	sd := (*Parse(t, msg).StructuredData)["vramward@32473"]
	if sd["worker_id"] != `a\u000ab\u0000c\u007fd\u0085e` {
		t.Fatalf("worker_id %q", sd["worker_id"])
	}
}

func TestSeverities(t *testing.T) {
	h := header(t)
	for typ, want := range map[audit.Type]uint8{
		audit.IntegrityViolation: 2, audit.PluginCrashed: 3, audit.ModelLoaded: 6,
	} {
		spec, _ := audit.Lookup(typ)
		var fields []audit.Field
		for _, f := range spec.Fields {
			switch f.Kind {
			case audit.KindString:
				fields = append(fields, audit.Str(f.Name, "x"))
			default:
				fields = append(fields, audit.Uint(f.Name, 1))
			}
		}
		e := event(t, typ, fields...)
		msg, _ := h.Message(nil, &e, e.AppendJSON(nil), 8192)
		if got := *Parse(t, msg).Severity; got != want {
			t.Errorf("%s: severity %d, want %d", typ, got, want)
		}
	}
}

// A message over the limit keeps its envelope, says it was shortened and
// by how much, and is still valid RFC 5424 with JSON in MSG.
func TestOversizeIsShortenedVisibly(t *testing.T) {
	h := header(t)
	e := event(t, audit.MalformedModelRejected, audit.Str("model_ref", "m"),
		audit.Str("validation_error", strings.Repeat("x", 4000)), audit.Str("action_taken", "refused"))
	full, _ := h.Message(nil, &e, e.AppendJSON(nil), 1<<20)
	msg, short := h.Message(nil, &e, e.AppendJSON(nil), MaxShortened)
	if !short || len(msg) > MaxShortened {
		t.Fatalf("shortened %v, %d bytes", short, len(msg))
	}
	m := Parse(t, msg)
	sd := (*m.StructuredData)["vramward@32473"]
	if sd["shortened"] != strconv.Itoa(len(full)) {
		t.Fatalf("shortened=%q, full message is %d bytes", sd["shortened"], len(full))
	}
	got, err := audit.ParseJSON([]byte(strings.TrimPrefix(*m.Message, bom)))
	if err != nil || got.Seq != 42 || len(got.Fields) != 0 {
		t.Fatalf("%v %+v", err, got)
	}
}

func TestNewHeaderRefuses(t *testing.T) {
	for _, c := range [][5]string{
		{"nope", "h", "a", "p", "x@1"},
		{"auth", "has space", "a", "p", "x@1"},
		{"auth", "h", strings.Repeat("a", 49), "p", "x@1"},
		{"auth", "h", "a", "", "x@1"},
		{"auth", "h", "a", "p", "noat"},
		{"auth", "h", "a", "p", "x@pen"},
		{"auth", "h", "a", "p", "a=b@1"},
		{"auth", "h", "a", "p", strings.Repeat("x", 30) + "@12"},
	} {
		if _, err := NewHeader(c[0], c[1], c[2], c[3], c[4]); err == nil {
			t.Errorf("accepted %q", c)
		}
	}
	if Hostname("a b\x00"+strings.Repeat("x", 300)) != "a_b_"+strings.Repeat("x", 251) {
		t.Error("Hostname does not fit the name")
	}
}

var _ syslog.Message = (*parser.SyslogMessage)(nil)
