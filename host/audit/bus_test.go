package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
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
	if failed := b.Start(context.Background()); len(failed) > 0 {
		t.Fatal(failed)
	}
	return b, reg, mcs
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

func TestChainStateAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	s := &memSink{}
	b := newBus(t, dir, Options{}, s)
	for i := 0; i < 5; i++ {
		if err := b.Emit(context.Background(), info(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close("first"); err != nil {
		t.Fatal(err)
	}
	// A clean stop: the next run continues the log.
	s2 := &memSink{}
	b2 := newBus(t, dir, Options{}, s2)
	if b2.Recovered {
		t.Fatal("a clean stop was taken for a crash")
	}
	if err := b2.Emit(context.Background(), info(t, 9)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "delivery", func() bool { return len(s2.got()) == 1 })
	first, next := s.got(), s2.got()[0]
	if next.Seq != first[len(first)-1].Seq+1 || string(next.Chain.Prev) != string(first[len(first)-1].Chain.Hash) {
		t.Fatalf("the log does not continue: seq %d after %d", next.Seq, first[len(first)-1].Seq)
	}
	// No Close: an unclean stop. The next run records AuditRecovered past
	// the reservation, linked to the last record the state holds.
	s3 := &memSink{}
	b3 := newBus(t, dir, Options{}, s3)
	if !b3.Recovered {
		t.Fatal("an unclean stop was not recovered")
	}
	if err := b3.Emit(context.Background(), info(t, 10)); err != nil {
		t.Fatal(err)
	}
	if err := b3.Close("third"); err != nil {
		t.Fatal(err)
	}
	rec := s3.got()[0]
	if rec.Type != audit.AuditRecovered || rec.Seq <= next.Seq || string(rec.Chain.Prev) != string(first[len(first)-1].Chain.Hash) {
		t.Fatalf("recovery record: %s seq %d prev %x", rec.Type, rec.Seq, rec.Chain.Prev)
	}
	// The three runs are one log that verifies with the public key; the
	// crashed run's record after its saved state is named.
	rep := verifyRecordsAfterCrash(t, dir, s.got(), s2.got(), s3.got())
	if len(rep.Notes) == 0 || !strings.Contains(rep.Notes[0], "not part of the log") {
		t.Fatalf("notes %q", rep.Notes)
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

func TestLostStateWithAPublicKeyIsRefused(t *testing.T) {
	dir := t.TempDir()
	b := newBus(t, dir, Options{}, &memSink{})
	if err := b.Close("x"); err != nil {
		t.Fatal(err)
	}
	if err := removeState(dir); err != nil {
		t.Fatal(err)
	}
	_, err := New(Options{StateDir: dir, Origin: trail.Origin("test")}, nil)
	if err == nil || !strings.Contains(err.Error(), PublicKeyFile) {
		t.Fatalf("a new log replaced the public key of the old one: %v", err)
	}
}

func removeState(dir string) error {
	return errors.Join(os.Remove(filepath.Join(dir, "chain.state.a")), os.Remove(filepath.Join(dir, "chain.state.b")))
}

// TestTornStateSlotFallsBack: a save cut short by a power loss leaves a slot
// that fails its checksum; the other slot still holds a state.
func TestTornStateSlotFallsBack(t *testing.T) {
	dir := t.TempDir()
	b := newBus(t, dir, Options{}, &memSink{})
	for i := 0; i < 3; i++ {
		if err := b.Emit(context.Background(), critical(t)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close("x"); err != nil {
		t.Fatal(err)
	}
	cs := &chainStore{dir: dir}
	newest, key, _, err := cs.load()
	if err != nil {
		t.Fatal(err)
	}
	key.Destroy()
	slot := cs.slotPath(int(newest.Gen % 2))
	data, _ := os.ReadFile(slot)
	data[20] ^= 0xff // a torn write
	if err := os.WriteFile(slot, data, 0o600); err != nil {
		t.Fatal(err)
	}
	got, _, found, err := (&chainStore{dir: dir}).load()
	if err != nil || !found || got.Gen != newest.Gen-1 {
		t.Fatalf("after tearing gen %d: found %v gen %d err %v", newest.Gen, found, got.Gen, err)
	}
	// The older slot was not written by a clean stop: the next start
	// records AuditRecovered rather than reusing anything.
	b2 := newBus(t, dir, Options{}, &memSink{})
	defer b2.Close("y")
	if !b2.Recovered {
		t.Fatal("resumed from an older, unclean slot without AuditRecovered")
	}
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

// TestChangedPublicKeyFileIsRefused: an audit.pub edited to another first
// key, to another identity key, or deleted, next to the log's state, stops
// the start naming the file; so do an identity key or a checkpoint left
// without the state. Before, each went unnoticed.
func TestChangedPublicKeyFileIsRefused(t *testing.T) {
	dir := t.TempDir()
	b := newBus(t, dir, Options{}, &memSink{})
	if err := b.Close("x"); err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(dir, PublicKeyFile)
	orig, err := os.ReadFile(pub)
	if err != nil {
		t.Fatal(err)
	}
	other, err := trail.New(trail.Origin("test"), trail.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Destroy()
	lines := strings.Split(strings.TrimSpace(string(orig)), "\n")
	for _, c := range []struct {
		name, text, want string
	}{
		{"first key replaced", other.VerifierKey() + "\n" + lines[1] + "\n", "names the first key"},
		{"identity replaced", lines[0] + "\n" + trail.IdentityPrefix + other.VerifierKey() + "\n", "names the identity key"},
		{"deleted", "", "is gone"},
	} {
		if c.text == "" {
			err = os.Remove(pub)
		} else {
			err = os.WriteFile(pub, []byte(c.text), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
		_, err := New(Options{StateDir: dir, Origin: trail.Origin("test")}, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), pub) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	// Slots and audit.pub gone, the checkpoint left: refused too.
	if err := errors.Join(removeState(dir)); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{StateDir: dir, Origin: trail.Origin("test")}, nil); err == nil || !strings.Contains(err.Error(), CheckpointFile) {
		t.Errorf("a state dir with only its checkpoint left started a new log: %v", err)
	}
	if !HasLog(dir) {
		t.Error("HasLog false with the checkpoint there")
	}
}
