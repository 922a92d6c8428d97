// Package audittest is the conformance harness for audit sinks. A sink
// author runs it from a normal `go test`, in this process:
//
//	func TestConformance(t *testing.T) {
//		audittest.Run(t, func(t *testing.T) (audit.Sink, []byte) {
//			return mysink.New(), []byte(`{"path": "` + t.TempDir() + `/a.log"}`)
//		}, audittest.WithReadBack(readMyOutput))
//	}
//
// and against the built plugin binary, launched as the host launches it:
//
//	audittest.RunBinary(t, "bin/vramward-plugin-mysink", newConfig, audittest.WithReadBack(readMyOutput))
//
// Every check crosses the real gRPC boundary through the SDK's Serve and
// Client, so it tests what the host will see. A read-back (the events the
// sink stored, read from its output by the test) is required: without one
// no check could see what was stored, so a sink that cannot offer one says
// why with WithoutReadBack, and the harness names each check it skipped.
//
// The checks:
//
//   - Info: a name, a version and a valid config schema.
//   - ConfigureRejectsUnknownKey: INVALID_CONFIG naming the key; the sink
//     stays usable, and a second Configure is refused.
//   - EmitBeforeConfigure: refused, and counted as a failure.
//   - Ordering, BatchSingleEquivalence: 150 single emits, 300 in batches:
//     stored in order, the same either way.
//   - CriticalFlushBeforeAck: Flush is called after a CRITICAL write and
//     before the answer (in-process); a failing Flush fails the emit and
//     is counted; an acknowledged CRITICAL event is readable at once.
//   - IdempotentShutdown: Shutdown flushes then closes once, however often
//     it is called; emits after it are refused.
//   - InvalidEventsRejected, ConcurrentEmits, HostileFields,
//     MaximumSizeFields: malformed events refused; concurrent emits all
//     stored once; hostile strings and maximum-size events stored exactly;
//     what a Shortener says it shortened is what the host counts.
//   - AckedSurvivesKill9 (binary): 250 events and a CRITICAL one,
//     acknowledged, then the plugin is killed with SIGKILL: every one must
//     be in the read-back. It fails a sink that acknowledges before it
//     writes, one that keeps events in its own memory (a Flush that does
//     nothing included) and one that drops events.
//   - ReSentEventsSkipped: a fresh instance on the same output gets events
//     it already stored again (the host's re-send after a restart) and must
//     skip them (audit.ResendWindow refilled from what is stored), unless
//     WithDuplicateReSends says the receiver cannot be asked.
//   - Reopen: events before and after a Reopen are all stored, in order.
//   - PeriodicFlush (in-process): a PeriodicFlusher gets its Flush on time.
//
// What no harness can prove: that a Flush survives a power loss (fsync
// reaching the disk's platter, a receiver's own durability), and that the
// sink behaves under faults of its output (a full disk, a receiver that
// hangs) that the test does not stage.
package audittest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audit/chain"
	"github.com/vramward/vramward/sdk/audit/sinkclient"
	"github.com/vramward/vramward/sdk/handshake"
	"github.com/vramward/vramward/sdk/internal/auditglue"
	"github.com/vramward/vramward/sdk/plugintest"
	"github.com/vramward/vramward/sdk/sanitize"
)

// Factory makes a fresh, unconfigured sink and the JSON config to give it.
// Each check calls it once, so use t.TempDir() for any path.
type Factory func(t *testing.T) (audit.Sink, []byte)

// ReadBack returns, in order, the events the sink persisted under config.
type ReadBack func(t *testing.T, config []byte) []audit.Event

// Option changes what the harness checks.
type Option func(*options)

type options struct {
	readBack   ReadBack
	noReadBack string
	dupReSends string
}

// WithDuplicateReSends says the sink cannot know, after a restart, what its
// receiver already holds (a remote transport without read-back), so a
// re-sent event may arrive twice, identical, for the reader to drop by seq
// and chain hash; the harness then accepts identical copies and nothing
// else.
func WithDuplicateReSends(why string) Option { return func(o *options) { o.dupReSends = why } }

// WithReadBack lets the harness compare what was persisted with what was
// sent, event by event. Without it no check can see what the sink stored,
// so the harness asks for it, or for WithoutReadBack.
func WithReadBack(rb ReadBack) Option { return func(o *options) { o.readBack = rb } }

// WithoutReadBack says why the sink's output cannot be read back here (a
// remote receiver the test does not own); the harness then runs without the
// persistence checks and names each one it skipped.
func WithoutReadBack(why string) Option { return func(o *options) { o.noReadBack = why } }

// target is one sink under test: how to connect to it, and its config.
type target struct {
	client *sinkclient.Client
	reg    *prometheus.Registry
	config []byte
	spy    *spy // nil for a binary
	pid    int  // the plugin process, for a binary
}

// connector makes a fresh instance of the sink under test, with a fresh
// config, or with config when it is not nil (a restart on the same output).
type connector func(t *testing.T, config []byte) *target

// Run checks a sink served in this process.
func Run(t *testing.T, newSink Factory, opts ...Option) {
	run(t, func(t *testing.T, config []byte) *target {
		sink, cfg := newSink(t)
		if config != nil {
			cfg = config
		}
		sp := &spy{Sink: sink}
		tg := &target{reg: prometheus.NewRegistry(), config: cfg, spy: sp}
		tg.client = Connect(t, sp, clientOptions(t, tg.reg))
		return tg
	}, opts)
}

// Connect serves sink in this process, through the SDK's own server (the
// one Serve runs in a plugin process), and returns the host's client for it
// (unconfigured). The connection ends with the test.
func Connect(t testing.TB, sink audit.Sink, opts sinkclient.Options) *sinkclient.Client {
	t.Helper()
	server, err := auditglue.ServerPlugin(sink, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	p := auditglue.Pair(server, sinkclient.Plugin(opts))
	return plugintest.InProcess(t, handshake.KindAuditSink, p).(*sinkclient.Client)
}

// RunBinary checks a built plugin binary, launched with AutoMTLS as the host
// launches it; newConfig makes the config of each fresh instance.
func RunBinary(t *testing.T, binary string, newConfig func(t *testing.T) []byte, opts ...Option) {
	run(t, func(t *testing.T, config []byte) *target {
		if config == nil {
			config = newConfig(t)
		}
		tg := &target{reg: prometheus.NewRegistry(), config: config}
		raw, c := plugintest.Binary(t, binary, handshake.KindAuditSink, sinkclient.Plugin(clientOptions(t, tg.reg)))
		tg.client = raw.(*sinkclient.Client)
		tg.pid = c.ReattachConfig().Pid
		return tg
	}, opts)
}

func clientOptions(t *testing.T, reg *prometheus.Registry) sinkclient.Options {
	m, err := sinkclient.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	return sinkclient.Options{Sink: "under-test", Metrics: m, Logger: hclog.NewNullLogger()}
}

func run(t *testing.T, connect connector, opts []Option) {
	o := &options{}
	for _, opt := range opts {
		opt(o)
	}
	switch {
	case o.readBack == nil && o.noReadBack == "":
		t.Fatal("audittest: give WithReadBack, so that the harness can see what the sink stored, or WithoutReadBack(why) to say why it cannot")
	case o.readBack == nil:
		t.Logf("audittest: without read-back (%s): skipped AckedSurvivesKill9, ReSentEventsSkipped and every comparison of what was stored", o.noReadBack)
	}
	checks := []struct {
		name string
		fn   func(t *testing.T, connect connector, o *options)
	}{
		{"Info", checkInfo},
		{"ConfigureRejectsUnknownKey", checkConfigureRejects},
		{"EmitBeforeConfigure", checkEmitBeforeConfigure},
		{"Ordering", checkOrdering},
		{"BatchSingleEquivalence", checkBatchEquivalence},
		{"CriticalFlushBeforeAck", checkCriticalFlush},
		{"IdempotentShutdown", checkShutdown},
		{"InvalidEventsRejected", checkInvalidEvents},
		{"ConcurrentEmits", checkConcurrent},
		{"HostileFields", checkHostile},
		{"MaximumSizeFields", checkMaxSize},
		{"AckedSurvivesKill9", checkKill9},
		{"ReSentEventsSkipped", checkReSend},
		{"Reopen", checkReopen},
		{"PeriodicFlush", checkPeriodicFlush},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) { c.fn(t, connect, o) })
	}
}

func ctx(t *testing.T) context.Context { return plugintest.Context(t) }

func configured(t *testing.T, connect connector) *target {
	t.Helper()
	return configuredWith(t, connect, nil)
}

func configuredWith(t *testing.T, connect connector, config []byte) *target {
	t.Helper()
	tg := connect(t, config)
	if err := tg.client.Configure(ctx(t), tg.config); err != nil {
		t.Fatalf("Configure(%s): %v", tg.config, err)
	}
	t.Cleanup(func() { _ = tg.client.Shutdown(context.Background()) })
	return tg
}

// Events makes n chained events cycling through the catalogue, linked the
// way the host links them.
func Events(n int) []audit.Event {
	s := &chain.Linker{}
	specs := audit.Catalogue()
	out := make([]audit.Event, 0, n)
	for i := 0; i < n; i++ {
		sp := specs[i%len(specs)]
		e, err := audit.New(sp.Type, audit.Actor{WorkerID: "worker-1", SourceIP: "127.0.0.1", CorrelationID: fmt.Sprintf("corr-%d", i)}, fieldsFor(sp, i)...)
		if err != nil {
			panic(err)
		}
		e.ServiceID = "audittest"
		s.Link(&e, 0)
		out = append(out, e)
	}
	return out
}

// Records encodes events as the host sends them to a sink (their record
// lines), for a test that calls a Sink's Write directly.
func Records(events []audit.Event) []audit.Record {
	out := make([]audit.Record, len(events))
	for i := range events {
		e := &events[i]
		out[i] = audit.Record{Event: *e, Line: e.AppendJSON(nil)}
	}
	return out
}

// nonCritical returns events of n types that are not CRITICAL, so that no
// flush is forced by severity.
func nonCritical(n int) []audit.Event {
	var out []audit.Event
	for _, e := range Events(n * 2) {
		if e.Severity != audit.Critical && len(out) < n {
			out = append(out, e)
		}
	}
	return out
}

func fieldsFor(sp audit.Spec, i int) []audit.Field {
	var fs []audit.Field
	for j, f := range sp.Fields {
		switch f.Kind {
		case audit.KindString:
			fs = append(fs, audit.Str(f.Name, fmt.Sprintf("%s-%d", f.Name, i)))
		case audit.KindUint:
			fs = append(fs, audit.Uint(f.Name, uint64(i*1000+j)))
		case audit.KindInt:
			fs = append(fs, audit.Int(f.Name, -int64(i)))
		case audit.KindBool:
			fs = append(fs, audit.Bool(f.Name, i%2 == 0))
		}
	}
	return fs
}

func checkInfo(t *testing.T, connect connector, _ *options) {
	tg := connect(t, nil)
	info, err := tg.client.Info(ctx(t))
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.Name == "" || info.Version == "" {
		t.Errorf("Info names no sink or version: %+v", info)
	}
	if err := info.Schema.Check(); err != nil {
		t.Errorf("published schema: %v", err)
	}
}

func checkConfigureRejects(t *testing.T, connect connector, _ *options) {
	tg := connect(t, nil)
	err := tg.client.Configure(ctx(t), []byte(`{"no_such_attribute_xyz": 1}`))
	var se *audit.Error
	if !errors.As(err, &se) || se.Reason != audit.ReasonInvalidConfig {
		t.Fatalf("unknown key: want INVALID_CONFIG, got %v", err)
	}
	found := false
	for _, f := range se.Fields {
		found = found || f.Field == "no_such_attribute_xyz"
	}
	if !found {
		t.Errorf("the field violation does not name the key: %+v", se.Fields)
	}
	// The valid config still works afterwards: a rejected Configure leaves
	// the sink unconfigured, not broken.
	if err := tg.client.Configure(ctx(t), tg.config); err != nil {
		t.Fatalf("Configure after a rejected one: %v", err)
	}
	if err := tg.client.Configure(ctx(t), tg.config); !errors.As(err, &se) || se.Reason != audit.ReasonConfigured {
		t.Errorf("second Configure: want %s, got %v", audit.ReasonConfigured, err)
	}
	_ = tg.client.Shutdown(ctx(t))
}

func checkEmitBeforeConfigure(t *testing.T, connect connector, _ *options) {
	tg := connect(t, nil)
	if err := tg.client.Emit(ctx(t), Events(1)[0]); !errors.Is(err, audit.ReasonNotConfigured) {
		t.Fatalf("emit before Configure: want %v, got %v", audit.ReasonNotConfigured, err)
	}
	if got := MetricSum(t, tg.reg, "vramward_audit_emit_failures_total"); got != 1 {
		t.Errorf("emit_failures_total = %v, want 1", got)
	}
}

func checkOrdering(t *testing.T, connect connector, o *options) {
	tg := configured(t, connect)
	events := Events(150)
	for i, e := range events {
		if err := tg.client.Emit(ctx(t), e); err != nil {
			t.Fatalf("emit %d: %v", i, err)
		}
	}
	if err := tg.client.Flush(ctx(t)); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if o.readBack != nil {
		assertSame(t, events, o.readBack(t, tg.config))
	}
}

func checkBatchEquivalence(t *testing.T, connect connector, o *options) {
	events := Events(300)
	single := configured(t, connect)
	for _, e := range events {
		if err := single.client.Emit(ctx(t), e); err != nil {
			t.Fatal(err)
		}
	}
	batched := configured(t, connect)
	for i := 0; i < len(events); i += 64 {
		if err := batched.client.EmitBatch(ctx(t), events[i:min(i+64, len(events))]); err != nil {
			t.Fatalf("batch at %d: %v", i, err)
		}
	}
	for _, tg := range []*target{single, batched} {
		if err := tg.client.Shutdown(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	if o.readBack != nil {
		a, b := o.readBack(t, single.config), o.readBack(t, batched.config)
		assertSame(t, events, a)
		assertSame(t, a, b)
	}
}

func checkCriticalFlush(t *testing.T, connect connector, o *options) {
	tg := configured(t, connect)
	var critical, info audit.Event
	for _, e := range Events(40) {
		if e.Severity == audit.Critical && critical.Seq == 0 {
			critical = e
		}
		if e.Severity == audit.Info && info.Seq == 0 {
			info = e
		}
	}
	if info.Seq == 0 || critical.Seq < info.Seq {
		t.Fatal("harness: the catalogue's order changed; fix the pick of events")
	}
	if tg.spy != nil {
		tg.spy.reset()
	}
	if err := tg.client.Emit(ctx(t), info); err != nil {
		t.Fatal(err)
	}
	if err := tg.client.Emit(ctx(t), critical); err != nil {
		t.Fatalf("CRITICAL emit: %v", err)
	}
	if tg.spy != nil {
		calls := tg.spy.log()
		if i := indexOf(calls, fmt.Sprintf("write %d", critical.Seq)); i < 0 || indexOf(calls[i:], "flush") < 0 {
			t.Fatalf("no flush after the CRITICAL write before the ack; calls: %v", calls)
		}
		// A failing flush must fail the CRITICAL emit (and only that).
		tg.spy.failFlush(true)
		more := Events(80)
		var c2, i2 audit.Event
		for _, e := range more[40:] {
			if e.Severity == audit.Critical && c2.Seq == 0 {
				c2 = e
			}
			if e.Severity == audit.Info && i2.Seq == 0 && e.Seq > critical.Seq {
				i2 = e
			}
		}
		if err := tg.client.Emit(ctx(t), i2); err != nil {
			t.Fatalf("INFO emit must not wait on a flush: %v", err)
		}
		err := tg.client.Emit(ctx(t), c2)
		var se *audit.Error
		if !errors.As(err, &se) || se.Reason != audit.ReasonFlushFailed {
			t.Fatalf("CRITICAL emit with a failing flush: want %s, got %v", audit.ReasonFlushFailed, err)
		}
		if got := MetricSum(t, tg.reg, "vramward_audit_critical_emit_failures_total"); got != 1 {
			t.Errorf("critical_emit_failures_total = %v, want 1", got)
		}
		tg.spy.failFlush(false)
	}
	if o.readBack != nil && tg.spy == nil {
		// Acknowledged means persisted: read back at once, no Flush first.
		got := o.readBack(t, tg.config)
		if len(got) == 0 || got[len(got)-1].Seq != critical.Seq {
			t.Fatalf("acknowledged CRITICAL event not persisted; read back %d events", len(got))
		}
	}
}

func checkShutdown(t *testing.T, connect connector, o *options) {
	tg := configured(t, connect)
	events := nonCritical(20)
	if err := tg.client.EmitBatch(ctx(t), events); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := tg.client.Shutdown(ctx(t)); err != nil {
			t.Fatalf("Shutdown #%d: %v", i+1, err)
		}
	}
	if tg.spy != nil {
		calls := tg.spy.log()
		if n := strings.Count(strings.Join(calls, ","), "close"); n != 1 {
			t.Errorf("Close called %d times: %v", n, calls)
		}
		if i := indexOf(calls, "close"); i < 1 || calls[i-1] != "flush" {
			t.Errorf("Close not preceded by Flush: %v", calls)
		}
	}
	late := Events(21)[20]
	if err := tg.client.Emit(ctx(t), late); !errors.Is(err, audit.ReasonShutDown) {
		t.Fatalf("emit after Shutdown: want %v, got %v", audit.ReasonShutDown, err)
	}
	if err := tg.client.EmitBatch(ctx(t), []audit.Event{late}); !errors.Is(err, audit.ReasonShutDown) {
		t.Fatalf("batch after Shutdown: want %v, got %v", audit.ReasonShutDown, err)
	}
	if err := tg.client.Flush(ctx(t)); !errors.Is(err, audit.ReasonShutDown) {
		t.Fatalf("flush after Shutdown: want %v, got %v", audit.ReasonShutDown, err)
	}
	if o.readBack != nil {
		assertSame(t, events, o.readBack(t, tg.config))
	}
}

func checkInvalidEvents(t *testing.T, connect connector, o *options) {
	tg := configured(t, connect)
	good := Events(3)
	bad := []struct {
		name string
		mod  func(e *audit.Event)
	}{
		{"severity 0", func(e *audit.Event) { e.Severity = 0 }},
		{"severity out of range", func(e *audit.Event) { e.Severity = 200 }},
		{"severity lowered below the catalogue", func(e *audit.Event) { e.Severity = audit.Low }},
		{"bad type", func(e *audit.Event) { e.Type = "Not A Type\n" }},
		{"short hash", func(e *audit.Event) { e.Chain.Hash = e.Chain.Hash[:5] }},
		{"unsorted fields", func(e *audit.Event) {
			if len(e.Fields) > 1 {
				e.Fields[0], e.Fields[1] = e.Fields[1], e.Fields[0]
			}
		}},
		{"oversized string", func(e *audit.Event) { e.Actor.WorkerID = strings.Repeat("w", sanitize.MaxStringBytes+1) }},
	}
	for _, b := range bad {
		e := good[0]
		e.Fields = append([]audit.Field(nil), e.Fields...)
		b.mod(&e)
		var se *audit.Error
		if err := tg.client.Emit(ctx(t), e); !errors.As(err, &se) || se.Reason != audit.ReasonInvalidEvent {
			t.Errorf("%s: want %s, got %v", b.name, audit.ReasonInvalidEvent, err)
		}
	}
	// The sink is still usable and holds only the good events.
	if err := tg.client.EmitBatch(ctx(t), good); err != nil {
		t.Fatalf("good events after bad ones: %v", err)
	}
	shutdownAndCompare(t, tg, o, good)
}

func checkConcurrent(t *testing.T, connect connector, o *options) {
	tg := configured(t, connect)
	const workers, each = 8, 40
	events := nonCritical(workers * each)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(part []audit.Event) {
			defer wg.Done()
			for i, e := range part {
				var err error
				switch i % 3 {
				case 0:
					err = tg.client.Emit(ctx(t), e)
				case 1:
					err = tg.client.EmitBatch(ctx(t), []audit.Event{e})
				default:
					if err = tg.client.Emit(ctx(t), e); err == nil {
						err = tg.client.Flush(ctx(t))
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}(events[w*each : (w+1)*each])
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent emit: %v", err)
	}
	if err := tg.client.Shutdown(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if o.readBack != nil {
		got := o.readBack(t, tg.config)
		if len(got) != len(events) {
			t.Fatalf("persisted %d of %d events", len(got), len(events))
		}
		bySeq := map[uint64]audit.Event{}
		for _, e := range got {
			if _, dup := bySeq[e.Seq]; dup {
				t.Fatalf("seq %d persisted twice", e.Seq)
			}
			bySeq[e.Seq] = e
		}
		for _, e := range events {
			g, ok := bySeq[e.Seq]
			if !ok {
				t.Fatalf("seq %d lost", e.Seq)
			}
			assertSame(t, []audit.Event{e}, []audit.Event{g})
		}
	}
}

// checkKill9: acknowledged means stored where a crash of the plugin process
// cannot take it back. 250 events in batches, then a CRITICAL one, all
// acknowledged; the plugin is killed with SIGKILL; a read-back must find
// every one. A sink that acknowledges before it writes, or writes to a
// buffer in its own memory, or drops events, fails here.
func checkKill9(t *testing.T, connect connector, o *options) {
	if o.readBack == nil {
		t.Skipf("no read-back: %s", o.noReadBack)
	}
	tg := configured(t, connect)
	if tg.pid == 0 {
		t.Skip("in-process: SIGKILL needs a plugin process (RunBinary)")
	}
	events := Events(400)
	var sent []audit.Event
	for _, e := range events {
		if e.Severity != audit.Critical && len(sent) < 250 {
			sent = append(sent, e)
		}
	}
	for i := 0; i < len(sent); i += 50 {
		if err := tg.client.EmitBatch(ctx(t), sent[i:min(i+50, len(sent))]); err != nil {
			t.Fatalf("batch at %d: %v", i, err)
		}
	}
	var critical audit.Event
	for _, e := range events {
		if e.Severity == audit.Critical && e.Seq > sent[len(sent)-1].Seq {
			critical = e
			break
		}
	}
	if err := tg.client.Emit(ctx(t), critical); err != nil {
		t.Fatalf("CRITICAL emit: %v", err)
	}
	sent = append(sent, critical)
	if err := syscall.Kill(tg.pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 the plugin: %v", err)
	}
	for deadline := time.Now().Add(5 * time.Second); syscall.Kill(tg.pid, 0) == nil && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	got := o.readBack(t, tg.config)
	stored := map[uint64]bool{}
	for _, e := range got {
		stored[e.Seq] = true
	}
	var lost []uint64
	for _, e := range sent {
		if !stored[e.Seq] {
			lost = append(lost, e.Seq)
		}
	}
	if len(lost) > 0 {
		t.Fatalf("%d acknowledged events lost after kill -9 of the plugin (seqs %v): Write must hand events to the kernel or the transport before it returns, and Flush must make them durable", len(lost), firstFew(lost))
	}
}

func indexOfSeq(events []audit.Event, seq uint64) int {
	for i := range events {
		if events[i].Seq == seq {
			return i
		}
	}
	return -1
}

func firstFew(s []uint64) []uint64 {
	if len(s) > 10 {
		return s[:10]
	}
	return s
}

// checkReSend: after a restart the host sends again what it had no answer
// for; a fresh instance on the same output must skip what is stored (same
// seq, same chain hash) and store the rest once.
func checkReSend(t *testing.T, connect connector, o *options) {
	if o.readBack == nil {
		t.Skipf("no read-back: %s", o.noReadBack)
	}
	events := nonCritical(40)
	first := configured(t, connect)
	if err := first.client.EmitBatch(ctx(t), events[:30]); err != nil {
		t.Fatal(err)
	}
	if err := first.client.Shutdown(ctx(t)); err != nil {
		t.Fatal(err)
	}
	again := configuredWith(t, connect, first.config)
	if err := again.client.EmitBatch(ctx(t), events[20:]); err != nil {
		t.Fatalf("re-send after a restart: %v", err)
	}
	if err := again.client.Shutdown(ctx(t)); err != nil {
		t.Fatal(err)
	}
	got := o.readBack(t, first.config)
	seen := map[uint64]int{}
	var once []audit.Event
	for _, e := range got {
		if seen[e.Seq] > 0 && o.dupReSends != "" {
			if first := once[indexOfSeq(once, e.Seq)]; !bytes.Equal(first.AppendJSON(nil), e.AppendJSON(nil)) {
				t.Fatalf("seq %d stored twice, and the copies differ", e.Seq)
			}
			seen[e.Seq]++
			continue
		}
		seen[e.Seq]++
		once = append(once, e)
	}
	for _, e := range events {
		switch n := seen[e.Seq]; {
		case n == 0:
			t.Fatalf("seq %d lost across the restart", e.Seq)
		case n > 1 && o.dupReSends == "":
			t.Fatalf("seq %d stored %d times: a re-sent event (same seq, same chain hash) must be skipped (audit.ResendWindow, refilled from what is stored at Configure)", e.Seq, n)
		}
	}
	if o.dupReSends != "" && len(once) != len(got) {
		t.Logf("re-sent events arrived twice, identical (%s)", o.dupReSends)
	}
	assertSame(t, events, once)
}

// checkReopen: Reopen (the host's SIGHUP, after logrotate moved the output)
// keeps every event, before and after, in order.
func checkReopen(t *testing.T, connect connector, o *options) {
	tg := configured(t, connect)
	events := nonCritical(20)
	if err := tg.client.EmitBatch(ctx(t), events[:10]); err != nil {
		t.Fatal(err)
	}
	if err := tg.client.Reopen(ctx(t)); err != nil {
		t.Fatalf("Reopen: %v", err)
	}
	if err := tg.client.EmitBatch(ctx(t), events[10:]); err != nil {
		t.Fatalf("emit after Reopen: %v", err)
	}
	if err := tg.client.Shutdown(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if o.readBack != nil {
		assertSame(t, events, o.readBack(t, tg.config))
	}
}

// checkPeriodicFlush: a sink that asks for a periodic Flush
// (PeriodicFlusher) gets one within a few intervals of an INFO event, with
// no CRITICAL event to force it. In-process only (the harness sees calls).
func checkPeriodicFlush(t *testing.T, connect connector, _ *options) {
	tg := configured(t, connect)
	if tg.spy == nil {
		t.Skip("binary: the harness cannot see the sink's calls; run Run for it")
	}
	pf, ok := tg.spy.Sink.(audit.PeriodicFlusher)
	if !ok || pf.FlushInterval() <= 0 {
		t.Skip("the sink asks for no periodic flush")
	}
	every := pf.FlushInterval()
	if every > 3*time.Second {
		t.Skipf("flush interval %s: too long to wait for here", every)
	}
	tg.spy.reset()
	if err := tg.client.Emit(ctx(t), nonCritical(1)[0]); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(3*every + time.Second); time.Now().Before(deadline); time.Sleep(every / 10) {
		if indexOf(tg.spy.log(), "flush") >= 0 {
			return
		}
	}
	t.Fatalf("no periodic Flush within %s of an event (interval %s)", 3*every+time.Second, every)
}

// Hostile strings reach the sink unsanitised here on purpose: the host
// sanitises, but a sink must still encode safely for its own format.
var hostile = []string{
	`quote " and apostrophe '`, `close ] bracket and [ open`, `back\slash \\ double`,
	"new\nline and\r\nCRLF", "tab\tand\x00NUL\x7fDEL", "\x1b[31mANSI\x1b[0m", "bidi \u202eevil\u202c",
	"non-ASCII: modèle – 日本語 – 🚀", "= sign and ; semicolon", `{"json":"inside"}`, "<142>1 2026-01-01T00:00:00Z forged - - - -",
}

func checkHostile(t *testing.T, connect connector, o *options) {
	tg := configured(t, connect)
	s := &chain.Linker{}
	var sent []audit.Event
	for i, h := range hostile {
		e, err := audit.Make(audit.Actor{WorkerID: "w"}, audit.MalformedModelRejectedFields{ModelRef: "m", ValidationError: "v", ActionTaken: "a"})
		if err != nil {
			t.Fatal(err)
		}
		// Overwrite after Make so the raw value goes out unsanitised (the
		// first field by name is action_taken).
		e.Fields[0].Value = audit.Str("", h).Value
		e.Actor = audit.Actor{WorkerID: h, SourceIP: h, CorrelationID: h}
		e.ServiceID = h
		s.Link(&e, 0)
		sent = append(sent, e)
		if err := tg.client.Emit(ctx(t), e); err != nil {
			t.Fatalf("hostile value %d %q: %v", i, h, err)
		}
	}
	shutdownAndCompare(t, tg, o, sent)
}

func checkMaxSize(t *testing.T, connect connector, o *options) {
	tg := configured(t, connect)
	s := &chain.Linker{}
	big := strings.Repeat("x", sanitize.MaxStringBytes-4) + "日"
	var sent []audit.Event
	for i := 0; i < 16; i++ {
		e := audit.Event{ID: fmt.Sprintf("max-%d", i), Time: time.Now().UTC(), Type: "AuditHarnessMaxSize", Severity: audit.Low,
			ServiceID: big, Actor: audit.Actor{WorkerID: big, SourceIP: big, CorrelationID: big}}
		for f := 0; f < audit.MaxFields; f++ {
			e.Fields = append(e.Fields, audit.Str(fmt.Sprintf("f%02d", f), big))
		}
		s.Link(&e, 0)
		sent = append(sent, e)
	}
	// One alone, then the rest as one batch larger than a gRPC message: the
	// client must split it, the sink must take every part.
	if err := tg.client.Emit(ctx(t), sent[0]); err != nil {
		t.Fatalf("maximum-size event: %v", err)
	}
	if err := tg.client.EmitBatch(ctx(t), sent[1:]); err != nil {
		t.Fatalf("batch of maximum-size events: %v", err)
	}
	if tg.spy != nil {
		if sh, ok := tg.spy.Sink.(audit.Shortener); ok {
			// What the sink says it shortened is what the host counts.
			if got, want := MetricSum(t, tg.reg, "vramward_audit_shortened_events_total"), float64(sh.Shortened()); got != want {
				t.Errorf("shortened_events_total = %v, the sink says %v", got, want)
			}
		}
	}
	shutdownAndCompare(t, tg, o, sent)
}

// shutdownAndCompare shuts the sink down and, with a read-back, checks it
// persisted exactly sent.
func shutdownAndCompare(t *testing.T, tg *target, o *options, sent []audit.Event) {
	t.Helper()
	if err := tg.client.Shutdown(ctx(t)); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if o.readBack != nil {
		assertSame(t, sent, o.readBack(t, tg.config))
	}
}

// assertSame compares two event lists through their canonical encoding,
// which is what chain.hash covers.
func assertSame(t *testing.T, want, got []audit.Event) {
	t.Helper()
	if len(want) != len(got) {
		t.Fatalf("persisted %d events, sent %d", len(got), len(want))
	}
	for i := range want {
		w, g := want[i].AppendJSON(nil), got[i].AppendJSON(nil)
		if string(w) != string(g) {
			t.Fatalf("event %d differs:\n sent %.300s\n read %.300s", i, w, g)
		}
	}
}

// MetricSum sums the counter and gauge values of every series of the metric
// called name in reg whose labels include the given name/value pairs.
func MetricSum(t testing.TB, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue next
				}
			}
			total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return total
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// ReadJSONLines reads the events of JSON-lines trail files, in the order
// given. A line that is not a canonical record, or a file that ends in a
// partial line, fails the test: a sink must never leave either behind.
func ReadJSONLines(t testing.TB, files ...string) []audit.Event {
	t.Helper()
	var out []audit.Event
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) > 0 && data[len(data)-1] != '\n' {
			t.Fatalf("%s ends in a partial line", f)
		}
		for i, line := range bytes.Split(bytes.TrimSuffix(data, []byte{'\n'}), []byte{'\n'}) {
			if len(line) == 0 && len(data) == 0 {
				break
			}
			e, err := audit.ParseJSON(line)
			if err != nil {
				t.Fatalf("%s:%d: %v", f, i+1, err)
			}
			if !e.IsCanonical(line) {
				t.Fatalf("%s:%d: not in canonical form", f, i+1)
			}
			out = append(out, e)
		}
	}
	return out
}

// JSONLinesFile is the read-back of a sink that appends the records to one
// file, named by the string attribute key of its config: no file yet is no
// events.
func JSONLinesFile(key string) ReadBack {
	return func(t *testing.T, config []byte) []audit.Event {
		t.Helper()
		var cfg map[string]any
		if err := json.Unmarshal(config, &cfg); err != nil {
			t.Fatal(err)
		}
		path, _ := cfg[key].(string)
		if _, err := os.Stat(path); err != nil {
			return nil
		}
		return ReadJSONLines(t, path)
	}
}
