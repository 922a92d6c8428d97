package syslogsink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	parser "github.com/leodido/go-syslog/v4/rfc5424"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audittest"
	"github.com/vramward/vramward/sdk/audittest/rsyslogd"
	"github.com/vramward/vramward/sdk/sanitize"
	"github.com/vramward/vramward/sdk/schema"
)

const bom = "\xef\xbb\xbf"

// servers maps a config's address to the rsyslogd behind it, for read-back.
var servers sync.Map

func configFor(t testing.TB, s *rsyslogd.Server, extra map[string]any) []byte {
	t.Helper()
	cfg := map[string]any{"hostname": "gpu-node-1", "max_message_bytes": 1 << 20, "buffer_bytes": 1 << 24}
	switch s.Kind {
	case rsyslogd.UnixDgram:
		cfg["transport"], cfg["address"] = "unix", s.Socket
	case rsyslogd.UnixStream:
		cfg["transport"], cfg["address"] = "unix-stream", s.Socket
	case rsyslogd.UDP:
		cfg["transport"], cfg["address"], cfg["max_message_bytes"] = "udp", s.Addr(), 65000
	case rsyslogd.TCP:
		cfg["transport"], cfg["address"] = "tcp", s.Addr()
	case rsyslogd.RELP:
		cfg["transport"], cfg["address"] = "relp", s.Addr()
	case rsyslogd.TLS, rsyslogd.MTLS:
		cfg["transport"], cfg["address"], cfg["tls_ca_file"], cfg["tls_server_name"] = "tls", s.Addr(), s.CA, "localhost"
		if s.Kind == rsyslogd.MTLS {
			cfg["tls_cert_file"], cfg["tls_key_file"] = s.CertPEM, s.KeyPEM
		}
	}
	for k, v := range extra {
		cfg[k] = v
	}
	b, _ := json.Marshal(cfg)
	servers.Store(cfg["address"], s)
	return b
}

func configured(t *testing.T, cfgJSON []byte) *Sink {
	t.Helper()
	vals, err := Schema.Decode(cfgJSON)
	if err != nil {
		t.Fatal(err)
	}
	s := New(nil)
	if err := s.Configure(context.Background(), vals); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// parsed is one received message, parsed by a real RFC 5424 parser.
type parsed struct {
	m     *parser.SyslogMessage
	sd    map[string]string
	event audit.Event
}

func parse(t testing.TB, line string) parsed {
	t.Helper()
	m, err := parser.NewParser(parser.WithCompliantMsg()).Parse([]byte(line))
	if err != nil {
		t.Fatalf("received message is not RFC 5424: %v\n%q", err, line)
	}
	sm := m.(*parser.SyslogMessage)
	p := parsed{m: sm, sd: (*sm.StructuredData)[DefaultSDID]}
	if sm.Message == nil || !strings.HasPrefix(*sm.Message, bom) {
		t.Fatalf("MSG does not start with a BOM: %q", line)
	}
	if p.event, err = audit.ParseJSON([]byte(strings.TrimPrefix(*sm.Message, bom))); err != nil {
		t.Fatalf("MSG is not an event: %v", err)
	}
	return p
}

// readBack waits until the receiver's output stops growing and returns the
// events in it.
func readBack(t *testing.T, cfgJSON []byte) []audit.Event {
	var cfg struct{ Address string }
	_ = json.Unmarshal(cfgJSON, &cfg)
	v, ok := servers.Load(cfg.Address)
	if !ok {
		t.Fatalf("no receiver for %s", cfg.Address)
	}
	s := v.(*rsyslogd.Server)
	last, stable := -1, 0
	for i := 0; i < 200 && stable < 10; i++ {
		n := len(s.Lines())
		if n == last {
			stable++
		} else {
			stable, last = 0, n
		}
		time.Sleep(20 * time.Millisecond)
	}
	var out []audit.Event
	for _, l := range s.Lines() {
		out = append(out, parse(t, l).event)
	}
	return out
}

func TestConformanceThroughRsyslogTCP(t *testing.T) {
	audittest.Run(t, func(t *testing.T) (audit.Sink, []byte) {
		return New(nil), configFor(t, rsyslogd.Start(t, rsyslogd.TCP), nil)
	}, audittest.WithReadBack(readBack), audittest.WithDuplicateReSends("a restarted sink cannot ask the receiver what it holds; readers drop copies by seq and hash"))
}

// hostileEvents are sealed events whose strings hold quotes, ']',
// backslashes, newlines, escapes and non-ASCII, in the fields and in the
// actor (which goes to structured data).
func hostileEvents(t testing.TB, n int) []audit.Event {
	evs := audittest.Events(n)
	const hostile = "q\"b]s\\n\nesc\x1b[31m bidi\u202e \u00e9\u4e2d\U0001F600"
	for i := range evs {
		evs[i].Actor.WorkerID = sanitize.String("worker " + hostile)
		evs[i].Actor.CorrelationID = sanitize.String(fmt.Sprintf("corr-%d %s", i, hostile))
	}
	// Resealing is not needed: the sink never checks MACs, and what is
	// compared is what was sent.
	return evs
}

func TestEveryTransportFieldByField(t *testing.T) {
	for _, c := range []struct {
		kind  string
		extra map[string]any
	}{
		{rsyslogd.UnixDgram, nil},
		{rsyslogd.UnixStream, nil},
		{rsyslogd.UDP, nil},
		{rsyslogd.TCP, nil},
		{rsyslogd.TCP, map[string]any{"framing": "non-transparent"}},
		{rsyslogd.TLS, nil},
		{rsyslogd.MTLS, nil},
		{rsyslogd.RELP, nil},
	} {
		name := c.kind
		if c.extra != nil {
			name += "-non-transparent"
		}
		t.Run(name, func(t *testing.T) {
			srv := rsyslogd.Start(t, c.kind)
			s := configured(t, configFor(t, srv, c.extra))
			events := hostileEvents(t, 40)
			if err := s.Write(context.Background(), audittest.Records(events[:25])); err != nil {
				t.Fatal(err)
			}
			if err := s.Write(context.Background(), audittest.Records(events[25:])); err != nil {
				t.Fatal(err)
			}
			if err := s.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			lines := srv.WaitLines(t, len(events), 10*time.Second)
			if len(lines) != len(events) {
				t.Fatalf("received %d messages, sent %d", len(lines), len(events))
			}
			for i, l := range lines {
				compare(t, parse(t, l), &events[i])
			}
		})
	}
}

func compare(t *testing.T, p parsed, e *audit.Event) {
	t.Helper()
	wantSev := map[audit.Severity]uint8{audit.Critical: 2, audit.High: 3, audit.Medium: 4, audit.Low: 5, audit.Info: 6}[e.Severity]
	m := p.m
	switch {
	case *m.Facility != 4 || *m.Severity != wantSev:
		t.Fatalf("seq %d: facility %d severity %d, want 4 and %d", e.Seq, *m.Facility, *m.Severity, wantSev)
	case !m.Timestamp.Equal(e.Time.Truncate(time.Microsecond)):
		t.Fatalf("seq %d: timestamp %v, want %v", e.Seq, m.Timestamp, e.Time)
	case *m.Hostname != "gpu-node-1" || *m.Appname != "vramward" || *m.MsgID != string(e.Type):
		t.Fatalf("seq %d: header %q %q %q", e.Seq, *m.Hostname, *m.Appname, *m.MsgID)
	}
	want := map[string]string{"seq": fmt.Sprint(e.Seq), "severity": e.Severity.String(), "worker_id": e.Actor.WorkerID,
		"correlation_id": e.Actor.CorrelationID, "epoch": fmt.Sprint(e.Chain.Epoch), "hash": fmt.Sprintf("%x", e.Chain.Hash)}
	for k, v := range want {
		if p.sd[k] != v {
			t.Fatalf("seq %d: SD %s = %q, want %q", e.Seq, k, p.sd[k], v)
		}
	}
	if got, sent := strings.TrimPrefix(*m.Message, bom), string(e.AppendJSON(nil)); got != sent {
		t.Fatalf("seq %d: MSG differs from the record sent\n got %q\nwant %q", e.Seq, got, sent)
	}
}

func TestTLSRefusesTheWrongServer(t *testing.T) {
	srv := rsyslogd.Start(t, rsyslogd.TLS)
	s := configured(t, configFor(t, srv, map[string]any{"tls_server_name": "not-the-receiver"}))
	err := s.Write(context.Background(), audittest.Records(audittest.Events(1)))
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("want a certificate error, got %v", err)
	}
	// Without the CA the receiver's certificate is not trusted either.
	cfg := configFor(t, srv, nil)
	cfg = []byte(strings.Replace(string(cfg), `"tls_ca_file":"`+srv.CA+`",`, "", 1))
	s = configured(t, cfg)
	if err := s.Write(context.Background(), audittest.Records(audittest.Events(1))); err == nil {
		t.Fatal("a receiver signed by an unknown CA was accepted")
	}
}

func TestMutualTLSNeedsTheClientCertificate(t *testing.T) {
	srv := rsyslogd.Start(t, rsyslogd.MTLS)
	cfg := configFor(t, srv, nil)
	cfg = []byte(strings.NewReplacer(`"tls_cert_file":"`+srv.CertPEM+`",`, "", `"tls_key_file":"`+srv.KeyPEM+`",`, "").Replace(string(cfg)))
	s := configured(t, cfg)
	for i := 0; i < 3; i++ {
		_ = s.Write(context.Background(), audittest.Records(audittest.Events(3)[i:i+1]))
		time.Sleep(200 * time.Millisecond)
	}
	if n := len(srv.Lines()); n != 0 {
		t.Fatalf("the receiver took %d messages from a client without a certificate", n)
	}
}

// TestReceiverRestart is the README's guarantee for tcp, tls and unix: what was
// written before the receiver stopped arrived; what is written while it is
// away is held, fails the write (the host counts it and keeps its copy),
// and goes out, in order and once, when the receiver is back.
func TestReceiverRestart(t *testing.T) {
	for _, kind := range []string{rsyslogd.TCP, rsyslogd.TLS, rsyslogd.UnixStream, rsyslogd.UnixDgram, rsyslogd.RELP} {
		t.Run(kind, func(t *testing.T) { receiverRestart(t, kind) })
	}
}

func receiverRestart(t *testing.T, kind string) {
	srv := rsyslogd.Start(t, kind)
	s := configured(t, configFor(t, srv, map[string]any{"flush_interval": "50ms"}))
	events := audittest.Events(300)
	ctx := context.Background()
	if err := s.Write(ctx, audittest.Records(events[:100])); err != nil {
		t.Fatal(err)
	}
	srv.WaitLines(t, 100, 10*time.Second)
	srv.Stop(t)
	failed := 0
	for i := 100; i < 200; i += 10 {
		if err := s.Write(ctx, audittest.Records(events[i:i+10])); err != nil {
			failed++
		}
	}
	if failed == 0 {
		t.Fatal("writes while the receiver was down all succeeded: events were lost in a dead connection")
	}
	srv.Restart(t)
	// The host sends again what failed (the sink skips what it holds) and
	// goes on; periodic flushes drain the rest.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := s.Write(ctx, audittest.Records(events[100:300]))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sink did not reconnect: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	lines := srv.WaitLines(t, 300, 10*time.Second)
	seen := map[uint64]bool{}
	for i, l := range lines {
		e := parse(t, l).event
		if seen[e.Seq] {
			t.Fatalf("seq %d arrived twice", e.Seq)
		}
		seen[e.Seq] = true
		if e.Seq != events[i].Seq {
			t.Fatalf("message %d is seq %d, want %d (out of order)", i, e.Seq, events[i].Seq)
		}
	}
	if len(lines) != 300 {
		t.Fatalf("%d messages arrived, want 300", len(lines))
	}
}

func TestBufferIsBounded(t *testing.T) {
	srv := rsyslogd.Start(t, rsyslogd.TCP)
	s := configured(t, configFor(t, srv, map[string]any{"buffer_bytes": 8192, "max_message_bytes": 4096}))
	srv.Stop(t)
	ctx := context.Background()
	events := audittest.Events(40)
	var full error
	for i := range events {
		if err := s.Write(ctx, audittest.Records(events[i:i+1])); err != nil && strings.Contains(err.Error(), "buffer") {
			full = err
			break
		}
	}
	if full == nil {
		t.Fatal("the buffer never filled")
	}
	if s.pendBytes > 8192 {
		t.Fatalf("%d bytes held, over buffer_bytes", s.pendBytes)
	}
}

func TestConfigureNamesTheField(t *testing.T) {
	for field, cfg := range map[string]string{
		"transport":         `{"transport": "carrier-pigeon"}`,
		"address":           `{"transport": "tcp"}`,
		"framing":           `{"transport": "tcp", "address": "127.0.0.1:1", "framing": "lines"}`,
		"facility":          `{"facility": "nope"}`,
		"sd_id":             `{"sd_id": "nopen"}`,
		"app_name":          `{"app_name": "has space"}`,
		"max_message_bytes": `{"transport": "udp", "address": "127.0.0.1:1", "max_message_bytes": 70000}`,
		"buffer_bytes":      `{"buffer_bytes": 100}`,
		"tls_ca_file":       `{"transport": "tls", "address": "127.0.0.1:1", "tls_ca_file": "/nonexistent"}`,
	} {
		vals, err := Schema.Decode([]byte(cfg))
		if err != nil {
			t.Fatalf("%s: %v", cfg, err)
		}
		err = New(nil).Configure(context.Background(), vals)
		var fe schema.Errors
		if !errors.As(err, &fe) || fe[0].Field != field {
			t.Errorf("%s: %v, want an error on %s", cfg, err, field)
		}
	}
}

// TestDeployConfig runs deploy/rsyslog-vramward.conf (its paths and port
// moved into a temporary directory) and sends it events over mutual TLS.
func TestDeployConfig(t *testing.T) {
	text, err := os.ReadFile("../../../../deploy/rsyslog-vramward.conf")
	if err != nil {
		t.Fatal(err)
	}
	srv := rsyslogd.StartWith(t, rsyslogd.MTLS, func(s *rsyslogd.Server) string {
		return strings.NewReplacer(
			"/etc/rsyslog.d/tls/ca.pem", s.CA,
			"/etc/rsyslog.d/tls/", s.Dir+"/",
			`port="6514"`, fmt.Sprintf(`port="%d" address="127.0.0.1"`, s.Port),
			"/var/log/vramward/audit-syslog.log", s.Out,
		).Replace(string(text)) + fmt.Sprintf("global(workDirectory=%q)\n", s.Dir+"/work")
	})
	s := configured(t, configFor(t, srv, nil))
	events := hostileEvents(t, 10)
	if err := s.Write(context.Background(), audittest.Records(events)); err != nil {
		t.Fatal(err)
	}
	for i, l := range srv.WaitLines(t, len(events), 10*time.Second) {
		compare(t, parse(t, l), &events[i])
	}
}
