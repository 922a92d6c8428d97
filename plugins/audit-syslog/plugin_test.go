package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	parser "github.com/leodido/go-syslog/v4/rfc5424"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vramward/vramward/plugins/audit-syslog/internal/syslogsink"
	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audit/sinkclient"
	"github.com/vramward/vramward/sdk/audittest"
	"github.com/vramward/vramward/sdk/audittest/rsyslogd"
	"github.com/vramward/vramward/sdk/handshake"
	"github.com/vramward/vramward/sdk/plugintest"
)

var binary, fileBinary string

func TestMain(m *testing.M) {
	plugintest.Main(m, func(dir string) (err error) {
		if binary, err = plugintest.Build(dir, ".", "vramward-plugin-audit-syslog"); err != nil {
			return err
		}
		// The file sink is the benchmark's baseline.
		fileBinary, err = plugintest.Build(dir, "../audit-file", "vramward-plugin-audit-file")
		return err
	})
}

func unixConfig(s *rsyslogd.Server, extra string) []byte {
	return []byte(fmt.Sprintf(`{"transport": "unix", "address": %q, "hostname": "gpu-node-1"%s}`, s.Socket, extra))
}

// TestConformanceBinary runs the harness against the built plugin, sending
// to a real rsyslogd over its unix socket (the default transport).
func TestConformanceBinary(t *testing.T) {
	var srv *rsyslogd.Server
	audittest.RunBinary(t, binary, func(t *testing.T) []byte {
		srv = rsyslogd.Start(t, rsyslogd.UnixDgram)
		return unixConfig(srv, `, "max_message_bytes": 200000`)
	}, audittest.WithoutReadBack("the receiver's copy is read back in TestConformanceThroughRsyslogTCP, in-process"))
}

// TestOversizeIsShortenedAndCounted: an event over max_message_bytes
// arrives shortened and marked, and the host's counter says so.
func TestOversizeIsShortenedAndCounted(t *testing.T) {
	srv := rsyslogd.Start(t, rsyslogd.UnixDgram)
	reg := prometheus.NewRegistry()
	m, err := sinkclient.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := plugintest.Binary(t, binary, handshake.KindAuditSink,
		sinkclient.Plugin(sinkclient.Options{Sink: "syslog", Metrics: m, Logger: hclog.NewNullLogger()}))
	c := raw.(*sinkclient.Client)
	ctx := context.Background()
	if err := c.Configure(ctx, unixConfig(srv, "")); err != nil {
		t.Fatal(err)
	}
	events := audittest.Events(3)
	big, err := audit.New(audit.MalformedModelRejected, audit.Actor{WorkerID: "w"},
		audit.Str("model_ref", "m"), audit.Str("validation_error", strings.Repeat("v", 4000)), audit.Str("action_taken", strings.Repeat("a", 4000)))
	if err != nil {
		t.Fatal(err)
	}
	big.Seq, big.Chain = 99, events[2].Chain
	events[1] = big
	if err := c.EmitBatch(ctx, events); err != nil {
		t.Fatal(err)
	}
	if got := audittest.MetricSum(t, reg, "vramward_audit_shortened_events_total", "sink", "syslog"); got != 1 {
		t.Fatalf("vramward_audit_shortened_events_total = %v, want 1", got)
	}
	lines := srv.WaitLines(t, 3, 10*time.Second)
	msg, err := parser.NewParser(parser.WithCompliantMsg()).Parse([]byte(lines[1]))
	if err != nil {
		t.Fatal(err)
	}
	sd := (*msg.(*parser.SyslogMessage).StructuredData)[syslogsink.DefaultSDID]
	if sd["seq"] != "99" || sd["shortened"] == "" || len(lines[1]) > syslogsink.DefaultMaxMessageBytes {
		t.Fatalf("shortened message: SD %v, %d bytes", sd, len(lines[1]))
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(strings.TrimPrefix(*msg.(*parser.SyslogMessage).Message, "\xef\xbb\xbf")), &body); err != nil {
		t.Fatal(err)
	}
	if body["type"] != "MalformedModelRejected" {
		t.Fatalf("shortened MSG %v", body)
	}
}

// BenchmarkThroughput: events/s through the plugin process to rsyslogd over
// tcp and over its unix socket, each until rsyslogd has written every one,
// against the audit-file sink's rate (until written) in the same run.
func BenchmarkThroughput(b *testing.B) {
	const n = 20000
	events := audittest.Events(n)
	emit := func(b *testing.B, bin string, cfg []byte, done func()) float64 {
		m, _ := sinkclient.NewMetrics(prometheus.NewRegistry())
		raw, _ := plugintest.Binary(b, bin, handshake.KindAuditSink,
			sinkclient.Plugin(sinkclient.Options{Sink: "bench", Metrics: m, Logger: hclog.NewNullLogger()}))
		c := raw.(*sinkclient.Client)
		ctx := context.Background()
		if err := c.Configure(ctx, cfg); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for i := 0; i < n; i += 512 {
			if err := c.EmitBatch(ctx, events[i:min(i+512, n)]); err != nil {
				b.Fatal(err)
			}
		}
		if err := c.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		done()
		rate := n / time.Since(start).Seconds()
		_ = c.Shutdown(ctx)
		return rate
	}
	var file, tcp, unix []float64
	for b.Loop() {
		dir := b.TempDir()
		file = append(file, emit(b, fileBinary, []byte(fmt.Sprintf(`{"path": %q}`, filepath.Join(dir, "audit.log"))), func() {}))
		srv := rsyslogd.Start(b, rsyslogd.TCP)
		tcp = append(tcp, emit(b, binary, []byte(fmt.Sprintf(`{"transport": "tcp", "address": %q}`, srv.Addr())), func() { srv.WaitLines(b, n, time.Minute) }))
		srv = rsyslogd.Start(b, rsyslogd.UnixStream)
		unix = append(unix, emit(b, binary, []byte(fmt.Sprintf(`{"transport": "unix-stream", "address": %q}`, srv.Socket)), func() { srv.WaitLines(b, n, time.Minute) }))
	}
	f, tc, u := median(file), median(tcp), median(unix)
	b.ReportMetric(f, "file-events/s")
	b.ReportMetric(tc, "tcp-events/s")
	b.ReportMetric(u, "unix-stream-events/s")
	b.ReportMetric(tc/f, "tcp/file")
	b.ReportMetric(u/f, "unix/file")
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}
