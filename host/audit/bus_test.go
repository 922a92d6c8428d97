package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"

	"github.com/vramward/vramward/host/trail"
	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audit/chain"
	"github.com/vramward/vramward/sdk/audit/sinkclient"
	"github.com/vramward/vramward/sdk/audittest"
	"github.com/vramward/vramward/sdk/schema"
)

// memSink is a sink served over real gRPC in-process whose writes can be
// made to fail or to block.
type memSink struct {
	mu       sync.Mutex
	events   []audit.Event
	fail     error
	gate     chan struct{} // when non-nil, Write waits for it to close
	flushErr error         // returned by Flush
	closed   bool          // Close ran (the Shutdown RPC reached the sink)
}

func (m *memSink) Info() audit.SinkInfo {
	return audit.SinkInfo{Name: "mem", Version: "test", Schema: schema.Schema{}}
}
func (m *memSink) Configure(context.Context, schema.Values) error { return nil }
func (m *memSink) Write(ctx context.Context, records []audit.Record) error {
	events := make([]audit.Event, len(records))
	for i := range records {
		events[i] = records[i].Event
	}
	m.mu.Lock()
	gate, fail := m.gate, m.fail
	m.mu.Unlock()
	if err := passGate(ctx, gate); err != nil {
		return err
	}
	if fail != nil {
		return fail
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range events {
		if n := len(m.events); n > 0 && m.events[n-1].Seq >= e.Seq {
			continue // a re-send
		}
		m.events = append(m.events, e)
	}
	return nil
}
func (m *memSink) Flush(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.flushErr
}
func (m *memSink) Close(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}
func (m *memSink) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

// passGate waits for a test sink's gate to open (nil: open), or for ctx.
func passGate(ctx context.Context, gate chan struct{}) error {
	if gate == nil {
		return nil
	}
	select {
	case <-gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *memSink) set(fail error, gate chan struct{}) {
	m.mu.Lock()
	m.fail, m.gate = fail, gate
	m.mu.Unlock()
}

func (m *memSink) got() []audit.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]audit.Event(nil), m.events...)
}

type memConn struct {
	name string
	sink testSink
	t    *testing.T
	m    *sinkclient.Metrics
	// stoppedOpen counts Stops of a plugin whose sink was not closed yet.
	mu          sync.Mutex
	stops       int
	stoppedOpen int
}

func (c *memConn) Name() string { return c.name }
func (c *memConn) Start(context.Context) (*sinkclient.Client, error) {
	client := audittest.Connect(c.t, c.sink, sinkclient.Options{Sink: c.name, Metrics: c.m})
	return client, client.Configure(context.Background(), nil)
}
func (c *memConn) Crash() (audit.Event, bool) { return audit.Event{}, false }

// OnNode is true unless the sink says its copy is kept off the node.
func (c *memConn) OnNode() bool {
	o, ok := c.sink.(interface{ offNode() bool })
	return !ok || !o.offNode()
}
func (c *memConn) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stops++
	if !c.sink.isClosed() {
		c.stoppedOpen++
	}
}

func newBus(t *testing.T, dir string, opts Options, sinks ...*memSink) *Bus {
	t.Helper()
	b, _, _ := newBusWith(t, dir, opts, sinks...)
	return b
}

// newBusWith also returns the registry and the conns.
func newBusWith(t *testing.T, dir string, opts Options, sinks ...*memSink) (*Bus, *prometheus.Registry, []*memConn) {
	t.Helper()
	var any []testSink
	for _, s := range sinks {
		any = append(any, s)
	}
	return newBusWithSink(t, dir, opts, any...)
}

// testSink is a sink whose close the conn can check.
type testSink interface {
	audit.Sink
	isClosed() bool
}

func newBusWithSink(t *testing.T, dir string, opts Options, sinks ...testSink) (*Bus, *prometheus.Registry, []*memConn) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := sinkclient.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	var conns []SinkConn
	var mcs []*memConn
	for i, s := range sinks {
		mc := &memConn{name: fmt.Sprintf("s%d", i), sink: s, t: t, m: m}
		conns, mcs = append(conns, mc), append(mcs, mc)
	}
	opts.StateDir = dir
	if opts.Origin == "" {
		opts.Origin = trail.Origin("test")
	}
	opts.Logger = hclog.NewNullLogger()
	opts.Registerer = reg
	opts.RestartMin, opts.RestartMax = 5*time.Millisecond, 20*time.Millisecond
	if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = 5 * time.Second
	}
	if opts.CriticalTimeout == 0 {
		opts.CriticalTimeout = 2 * time.Second
	}
	b, err := New(opts, conns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mustBeStopped(t, b) })
	if failed := b.Start(context.Background()); len(failed) > 0 {
		t.Fatal(failed)
	}
	return b, reg, mcs
}

// mustBeStopped fails a test that leaves its bus running: the bus goes on
// writing into its state directory (the checkpoint file, a tick's save)
// while the test's clean-up removes it, or while the next run of the same
// test owns it. A test ends its bus with Close, or with crash to stand for
// a kill. It runs before the directory's removal: the directory was made
// before the bus.
func mustBeStopped(t *testing.T, b *Bus) {
	t.Helper()
	if !b.mu.lockBy(time.After(5 * time.Second)) {
		t.Error("the bus's lock is still held as the test ends")
		return
	}
	closed := b.closed
	b.mu.Unlock()
	if !closed {
		t.Error("the test left its bus running: Close it, or crash it to stand for a kill")
	}
}

func critical(t *testing.T) audit.Event {
	e, err := audit.New(audit.IntegrityViolation, audit.Actor{}, audit.Str("resource_type", "model"), audit.Str("resource_id", "m"),
		audit.Str("expected_hash", "a"), audit.Str("actual_hash", "b"), audit.Str("action_taken", "rejected"))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func info(t testing.TB, i int) audit.Event {
	e, err := audit.New(audit.SealVerified, audit.Actor{}, audit.Str("shard_id", fmt.Sprint(i)), audit.Uint("gpu_device", 0))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func hasType(events []audit.Event, typ audit.Type) bool {
	for _, e := range events {
		if e.Type == typ {
			return true
		}
	}
	return false
}

func TestRequireAllFailsClosedAndNothingIsLost(t *testing.T) {
	good, bad := &memSink{}, &memSink{}
	b := newBus(t, t.TempDir(), Options{Require: "all"}, good, bad)
	bad.set(errors.New("disk on fire"), nil)
	err := b.Emit(context.Background(), critical(t))
	var ce *CriticalError
	if !errors.As(err, &ce) {
		t.Fatalf("want *CriticalError, got %v", err)
	}
	if _, ok := ce.Failures["s1"]; !ok || len(ce.Failures) != 1 || ce.Seq == 0 {
		t.Fatalf("error %+v", ce)
	}
	eventually(t, "AuditSinkFailed on the good sink", func() bool { return hasType(good.got(), audit.AuditSinkFailed) })
	bad.set(nil, nil)
	eventually(t, "the held events on the recovered sink", func() bool {
		return hasType(bad.got(), audit.IntegrityViolation) && hasType(bad.got(), audit.AuditSinkRecovered)
	})
	if err := b.Close("test"); err != nil {
		t.Fatal(err)
	}
	if g, bd := good.got(), bad.got(); len(g) != len(bd) {
		t.Fatalf("good has %d events, the recovered sink %d", len(g), len(bd))
	}
	for i, e := range bad.got() {
		if e.Seq != uint64(i+1) {
			t.Fatalf("recovered sink: record %d has seq %d", i, e.Seq)
		}
	}
}

func TestRequireAnyNeedsOne(t *testing.T) {
	good, bad := &memSink{}, &memSink{}
	b := newBus(t, t.TempDir(), Options{Require: "any", ShutdownTimeout: 300 * time.Millisecond}, good, bad)
	defer b.Close("test")
	bad.set(errors.New("down"), nil)
	if err := b.Emit(context.Background(), critical(t)); err != nil {
		t.Fatalf("require any with one good sink: %v", err)
	}
	good.set(errors.New("down too"), nil)
	if err := b.Emit(context.Background(), critical(t)); err == nil {
		t.Fatal("CRITICAL emit succeeded with every sink down")
	}
}

// TestSlowSinkDoesNotBlockOthers: a stuck sink's events overflow its queue
// into the spool; the other sink gets everything at once; the stuck one gets
// everything, in order, once it moves.
func TestSlowSinkDoesNotBlockOthers(t *testing.T) {
	fast, slow := &memSink{}, &memSink{}
	gate := make(chan struct{})
	slow.set(nil, gate)
	b := newBus(t, t.TempDir(), Options{Require: "any", QueueSize: 10, BatchSize: 4}, fast, slow)
	start := time.Now()
	for i := 0; i < 200; i++ {
		if err := b.Emit(context.Background(), info(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("emits took %v with one sink stuck", time.Since(start))
	}
	eventually(t, "every event on the fast sink", func() bool { return len(fast.got()) == 200 })
	if d := b.Depth()["s1"]; d < 190 {
		t.Fatalf("stuck sink's depth %d", d)
	}
	close(gate)
	slow.set(nil, nil)
	eventually(t, "every event on the slow sink", func() bool { return len(slow.got()) >= 200 })
	if err := b.Close("test"); err != nil {
		t.Fatal(err)
	}
	for i, e := range slow.got() {
		if e.Seq != uint64(i+1) {
			t.Fatalf("slow sink: record %d has seq %d (order lost through the spool)", i, e.Seq)
		}
	}
}

// verifyRecords verifies what sinks received as one trail, with the key in
// state_dir/audit.pub.
func verifyRecords(t *testing.T, dir string, runs ...[]audit.Event) trail.Report {
	t.Helper()
	return verifyAccepting(t, dir, nil, runs...)
}

// trailOf is the runs' records as one trail, and the log's public key.
func trailOf(t *testing.T, dir string, runs [][]audit.Event) (note.Verifier, []byte) {
	t.Helper()
	var buf bytes.Buffer
	for _, run := range runs {
		for _, e := range run {
			buf.Write(e.AppendJSON(nil))
			buf.WriteByte('\n')
		}
	}
	key, _, err := trail.ReadVerifierKey(filepath.Join(dir, PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return key, buf.Bytes()
}

// verifyRecordsAfterCrash verifies a trail with a crash in it: it fails on
// the loss the crash declares, and verifies once that loss is accepted.
func verifyRecordsAfterCrash(t *testing.T, dir string, runs ...[]audit.Event) trail.Report {
	t.Helper()
	key, data := trailOf(t, dir, runs)
	rep, err := trail.Verify(trail.Options{Key: key}, chain.Source{Name: "sink", R: bytes.NewReader(data)})
	var ve *chain.Error
	if !errors.As(err, &ve) || ve.Problem != trail.Lost || len(rep.Lost) == 0 {
		t.Fatalf("a crash's loss did not fail verification: %v", err)
	}
	var accept []trail.SeqRange
	for _, l := range rep.Lost {
		accept = append(accept, l.SeqRange)
	}
	return verifyAccepting(t, dir, accept, runs...)
}

func verifyAccepting(t *testing.T, dir string, accept []trail.SeqRange, runs ...[]audit.Event) trail.Report {
	t.Helper()
	key, data := trailOf(t, dir, runs)
	rep, err := trail.Verify(trail.Options{Key: key, AcceptLoss: accept}, chain.Source{Name: "sink", R: bytes.NewReader(data)})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return rep
}

// TestCriticalReturnsAtTimeoutWithAStuckStateSync: a sink that does not
// answer in time and a state fdatasync that never returns (a hung disk): the
// CRITICAL emit still returns, failed, at critical_timeout. Before, the
// timer's one tick went to the sinks' wait and the state's wait had none.
func TestCriticalReturnsAtTimeoutWithAStuckStateSync(t *testing.T) {
	s := &memSink{}
	b := newBus(t, t.TempDir(), Options{CriticalTimeout: 200 * time.Millisecond}, s)
	stuck := make(chan struct{})
	hook := func(int) error { <-stuck; return nil }
	fdatasyncHook.Store(&hook)
	// Clean-ups run last first: the disk is unstuck, then the bus closed,
	// so that its idle refresh of state_dir/checkpoint does not race the
	// removal of the test's directory.
	t.Cleanup(func() { _ = b.Close("test ended") })
	t.Cleanup(func() { fdatasyncHook.Store(nil); close(stuck) })
	s.mu.Lock()
	s.gate = make(chan struct{}) // the sink answers only after the deadline
	s.mu.Unlock()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- b.Emit(context.Background(), critical(t)) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a CRITICAL emit succeeded with its sink and its state both stuck")
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("returned after %s, critical_timeout is 200ms", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the CRITICAL emit did not return at critical_timeout")
	}
	s.mu.Lock()
	close(s.gate)
	s.gate = nil
	s.mu.Unlock()
}
