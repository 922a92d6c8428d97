package daemon

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/mod/sumdb/note"

	hostaudit "github.com/vramward/vramward/host/audit"
	"github.com/vramward/vramward/host/config"
	"github.com/vramward/vramward/host/trail"
	"github.com/vramward/vramward/host/witness"
	"github.com/vramward/vramward/sdk/audit"
)

// BenchmarkShutdownDrain100k: 100,000 events are queued while the sink's
// plugin is not yet running; then the plugin starts and shutdown begins at
// once. Reported: the time from shutdown to every event on disk (goal: under
// 1 s), and its ratio to the same sink code appending them in-process.
func BenchmarkShutdownDrain100k(b *testing.B) {
	const n = 100000
	for i := 0; i < b.N; i++ {
		e := newEnv(b, strings.Replace(oneSink, `shutdown_timeout = "10s"`, `shutdown_timeout = "30s"
  queue_size = 200000`, 1))
		d, err := prepare(context.Background(), Options{Config: e.cfg, Logger: hclog.New(&hclog.LoggerOptions{Output: io.Discard}), Version: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		events := make([]audit.Event, n)
		for j := range events {
			events[j], _ = audit.New(audit.SealVerified, audit.Actor{WorkerID: "w"}, audit.Str("shard_id", fmt.Sprintf("shard-%d", j)), audit.Uint("gpu_device", 0))
		}
		for j := range events {
			if err := d.bus.Emit(context.Background(), events[j]); err != nil {
				b.Fatal(err)
			}
		}
		if err := d.start(context.Background(), context.Background()); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if err := d.Shutdown("bench"); err != nil {
			b.Fatal(err)
		}
		drain := time.Since(t0)
		data, err := os.ReadFile(filepath.Join(e.dir, "trail", "audit.log"))
		if err != nil {
			b.Fatal(err)
		}
		if lines := bytes.Count(data, []byte("\n")); lines < n+3 {
			b.Fatalf("%d lines on disk, want %d", lines, n+3)
		}
		base := inProcessAppend(b, events)
		b.ReportMetric(float64(drain.Milliseconds()), "ms-to-drain")
		b.ReportMetric(drain.Seconds()/base.Seconds(), "x-in-process")
	}
}

// inProcessAppend is the baseline: the same records appended as canonical
// JSON lines, one write per 512, then an fsync, in this process: the sink's
// own work, without the bus, the RPC or the log (so the ratio does not move
// when the log's per-record work does).
func inProcessAppend(b *testing.B, events []audit.Event) time.Duration {
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "a.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	t0 := time.Now()
	var buf []byte
	for i := 0; i < len(events); i += 512 {
		buf = buf[:0]
		for j := i; j < min(i+512, len(events)); j++ {
			buf = append(events[j].AppendJSON(buf), '\n')
		}
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	return time.Since(t0)
}

// BenchmarkCriticalEmit: a CRITICAL emit through the whole host (bus, the
// signed checkpoint that covers it, the log's state fdatasync, queue,
// client, plugin, fsync) until it returns, with the sink idle, interleaved
// one for one with a raw write+fsync of a record-sized line on the same
// disk, so that both see the same disk at the same moments. Reported: the
// medians, the p99 and the ratio of the medians (goal: at most 2).
func BenchmarkCriticalEmit(b *testing.B) {
	e := newEnv(b, oneSink)
	d, err := Start(context.Background(), Options{Config: e.cfg, Logger: hclog.New(&hclog.LoggerOptions{Output: io.Discard}), Version: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Shutdown("bench")
	criticalLoop(b, e, d)
}

// BenchmarkCriticalEmitWitnessed is BenchmarkCriticalEmit with a witness on
// loopback that every checkpoint is submitted to: the submission is off the
// CRITICAL path, so the figures match. Reported too: the checkpoints the
// witness cosigned.
func BenchmarkCriticalEmitWitnessed(b *testing.B) {
	e := newEnv(b, oneSink)
	// The node's identity key, made before the first start so that the
	// witness knows it.
	id, err := trail.GenerateKey(trail.Origin(e.cfg.Worker.ID))
	if err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(e.cfg.Worker.StateDir, 0o700); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.cfg.Worker.StateDir, hostaudit.IdentityFile), id.AppendSecret(nil), 0o600); err != nil {
		b.Fatal(err)
	}
	idv, err := note.NewVerifier(id.VerifierKey())
	if err != nil {
		b.Fatal(err)
	}
	skey, vkey, err := witness.GenerateKey("witness.bench/w")
	if err != nil {
		b.Fatal(err)
	}
	ws, err := witness.NewServer(witness.ServerOptions{Key: skey, StateDir: b.TempDir(), Logs: map[string][]note.Verifier{idv.Name(): {idv}}})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(ws)
	defer srv.Close()
	e.cfg.Audit.Witnesses = []*config.Witness{{Name: "w", URL: srv.URL, Key: vkey}}
	d, err := Start(context.Background(), Options{Config: e.cfg, Logger: hclog.New(&hclog.LoggerOptions{Output: io.Discard}), Version: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Shutdown("bench")
	criticalLoop(b, e, d)
	resp, err := http.Get(srv.URL + "/checkpoint?origin=" + trail.Origin(e.cfg.Worker.ID))
	if err != nil || resp.StatusCode != 200 {
		b.Fatalf("the witness cosigned nothing: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	c, err := trail.ParseCheckpoint(body)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(c.Size), "witnessed-tree-size")
}

func criticalLoop(b *testing.B, e *env, d *Daemon) {
	f, err := os.OpenFile(filepath.Join(e.dir, "trail", "raw.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	line := append(bytes.Repeat([]byte("x"), 500), '\n')
	var lat, raw []time.Duration
	for i := 0; i < max(b.N, 200); i++ {
		t0 := time.Now()
		if _, err := f.Write(line); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		raw = append(raw, time.Since(t0))
		ev, _ := audit.New(audit.PathTraversalAttempt, audit.Actor{WorkerID: "w"}, audit.Str("attempted_path", fmt.Sprintf("../%d", i)), audit.Str("allowed_roots", "/models"))
		t0 = time.Now()
		if err := d.Bus().Emit(context.Background(), ev); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	for _, l := range [][]time.Duration{lat, raw} {
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	}
	p50, raw50 := lat[len(lat)/2], raw[len(raw)/2]
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(raw50.Microseconds())/1000, "raw-fsync-p50-ms")
	b.ReportMetric(p50.Seconds()/raw50.Seconds(), "x-raw-fsync")
}
