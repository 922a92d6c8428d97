package audit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vramward/vramward/host/trail"
	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audittest"
)

// TestShutdownReachesEverySinkBeforeItsPluginStops: Close sends every sink
// the Shutdown RPC (its Close runs: flushed and closed) before the plugin
// is stopped, and a flush that fails at shutdown is counted and makes Close
// fail (run exits 3).
func TestShutdownReachesEverySinkBeforeItsPluginStops(t *testing.T) {
	a, b2 := &memSink{}, &memSink{}
	bus, reg, conns := newBusWith(t, t.TempDir(), Options{}, a, b2)
	for i := 0; i < 10; i++ {
		if err := bus.Emit(context.Background(), info(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	b2.mu.Lock()
	b2.flushErr = errors.New("EIO")
	b2.mu.Unlock()
	err := bus.Close("test")
	if err == nil || !strings.Contains(err.Error(), "s1") {
		t.Fatalf("a flush failure at shutdown did not fail Close: %v", err)
	}
	for i, c := range conns {
		if c.stops == 0 || c.stoppedOpen > 0 {
			t.Errorf("sink %d: plugin stopped %d times, %d of them before its Shutdown RPC", i, c.stops, c.stoppedOpen)
		}
	}
	if !a.isClosed() {
		t.Error("the healthy sink was not closed")
	}
	if n := audittest.MetricSum(t, reg, "vramward_audit_flush_failures_total", "sink", "s1"); n != 1 {
		t.Errorf("flush failures at shutdown counted %v, want 1", n)
	}
	if n := audittest.MetricSum(t, reg, "vramward_audit_flush_failures_total", "sink", "s0"); n != 0 {
		t.Errorf("the healthy sink counted %v flush failures", n)
	}
}

// TestSpoolReplayedFirstAtTheNextStart: a sink that takes nothing before
// the shutdown deadline leaves every event spooled (deterministically: its
// writes are held), Close says so, each is counted as failed once, and the
// next bus on the same state dir delivers them first, in seq order, before
// anything new.
func TestSpoolReplayedFirstAtTheNextStart(t *testing.T) {
	dir := t.TempDir()
	held := &memSink{}
	held.set(nil, make(chan struct{})) // never opened: nothing is written
	b, reg, _ := newBusWith(t, dir, Options{ShutdownTimeout: 200 * time.Millisecond, QueueSize: 50}, held)
	const n = 300 // more than the queue: some overflow to the spool while running
	for i := 0; i < n; i++ {
		if err := b.Emit(context.Background(), info(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	err := b.Close("deadline")
	if err == nil || !strings.Contains(err.Error(), "spooled") {
		t.Fatalf("Close with everything undelivered returned %v", err)
	}
	spool := filepath.Join(dir, "spool-s0.jsonl")
	if _, err := os.Stat(spool); err != nil {
		t.Fatalf("no spool: %v", err)
	}
	// Every record of the run: n, a checkpoint, HostStopped and its
	// checkpoint, each counted once.
	if got := audittest.MetricSum(t, reg, "vramward_audit_emit_failures_total", "sink", "s0"); got != n+3 {
		t.Errorf("emit failures counted %v, want %d (each spooled event once)", got, n+3)
	}

	fresh := &memSink{}
	b2 := newBus(t, dir, Options{}, fresh)
	if err := b2.Emit(context.Background(), info(t, 9999)); err != nil {
		t.Fatal(err)
	}
	if err := b2.Close("done"); err != nil {
		t.Fatal(err)
	}
	got := fresh.got()
	if len(got) < n+5 {
		t.Fatalf("the next start delivered %d events, want at least %d", len(got), n+5)
	}
	for i := 0; i < n+3; i++ {
		if got[i].Seq != uint64(i+1) {
			t.Fatalf("record %d of the next start has seq %d: the spool did not come first, in order", i, got[i].Seq)
		}
	}
	if got[n+1].Type != audit.HostStopped || got[n+2].Type != audit.AuditCheckpoint {
		t.Errorf("the spooled run ends with %s, %s", got[n+1].Type, got[n+2].Type)
	}
	verifyRecords(t, dir, got)
	if _, err := os.Stat(spool); !errors.Is(err, os.ErrNotExist) {
		t.Error("spool left after it was delivered")
	}
}

// TestChainStateDurableBeforeCriticalReturns: when a CRITICAL emit returns,
// the chain state on disk already holds its seq (a crash right after must
// not hand that seq out again).
func TestChainStateDurableBeforeCriticalReturns(t *testing.T) {
	dir := t.TempDir()
	b := newBus(t, dir, Options{}, &memSink{})
	defer b.Close("done")
	for round := 0; round < 20; round++ {
		for i := 0; i < 7; i++ {
			if err := b.Emit(context.Background(), info(t, i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Emit(context.Background(), critical(t)); err != nil {
			t.Fatal(err)
		}
		b.mu.Lock()
		seq := b.seq.tlog.Seq()
		b.mu.Unlock()
		st, key, ok, err := (&chainStore{dir: dir}).load()
		if err != nil || !ok {
			t.Fatalf("load state: %v %v", ok, err)
		}
		key.Destroy()
		if st.Seq < seq {
			t.Fatalf("round %d: CRITICAL seq %d returned, the state on disk holds seq %d", round, seq, st.Seq)
		}
		// The CRITICAL record (the one before the checkpoint just made)
		// is covered by the signed checkpoint the state holds...
		c, err := trail.ParseCheckpoint(st.LastCheckpoint)
		if err != nil || c.Size < seq-1 {
			t.Fatalf("round %d: the state's checkpoint covers %d records, the CRITICAL one is seq %d (%v)", round, c.Size, seq-1, err)
		}
		// ...and, right after, by state_dir/checkpoint, the copy for
		// operators (refreshed once the emit was answered).
		eventually(t, "state_dir/checkpoint covering the CRITICAL record", func() bool {
			note, err := os.ReadFile(filepath.Join(dir, CheckpointFile))
			if err != nil {
				return false
			}
			c, err := trail.ParseCheckpoint(note)
			return err == nil && c.Size >= seq-1
		})
	}
}

// TestHostDecidedCriticalFailuresAreCounted: a CRITICAL emit refused
// because its sink is already failing, or because the deadline passed on a
// sink that holds it, is counted in both failure series.
func TestHostDecidedCriticalFailuresAreCounted(t *testing.T) {
	s := &memSink{}
	b, reg, _ := newBusWith(t, t.TempDir(), Options{CriticalTimeout: 300 * time.Millisecond}, s)
	defer b.Close("done")
	s.set(errors.New("ENOSPC"), nil)
	if err := b.Emit(context.Background(), info(t, 1)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the sink failing", func() bool { return b.sinks[0].failure() != nil })
	const n = 5
	for i := 0; i < n; i++ {
		if err := b.Emit(context.Background(), critical(t)); err == nil {
			t.Fatal("a CRITICAL emit on a failing sink returned nil")
		}
	}
	if got := audittest.MetricSum(t, reg, "vramward_audit_critical_emit_failures_total", "sink", "s0"); got < n {
		t.Errorf("critical_emit_failures_total %v after %d refused CRITICAL emits", got, n)
	}
	// A sink that holds writes (blackholed): the deadline decides.
	s.set(nil, nil)
	eventually(t, "the sink recovering", func() bool { return b.sinks[0].failure() == nil })
	gate := make(chan struct{})
	defer close(gate)
	s.set(nil, gate)
	before := audittest.MetricSum(t, reg, "vramward_audit_critical_emit_failures_total", "sink", "s0")
	if err := b.Emit(context.Background(), critical(t)); err == nil {
		t.Fatal("a CRITICAL emit on a blackholed sink returned nil")
	}
	if got := audittest.MetricSum(t, reg, "vramward_audit_critical_emit_failures_total", "sink", "s0"); got != before+1 {
		t.Errorf("a CRITICAL emit that timed out counted %v, want %v", got, before+1)
	}
	if got := audittest.MetricSum(t, reg, "vramward_audit_emit_failures_total", "sink", "s0", "severity", "CRITICAL"); got < n+1 {
		t.Errorf("emit_failures_total{severity=CRITICAL} %v", got)
	}
}

// cutSink stores the first cut events of its first write, reports a
// PartialWriteError, and then fails every write: a receiver gone mid-batch
// that does not come back before the host stops.
type cutSink struct {
	memSink
	cut int
}

func (c *cutSink) Write(ctx context.Context, records []audit.Record) error {
	events := make([]audit.Event, len(records))
	for i := range records {
		events[i] = records[i].Event
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut < 0 {
		return errors.New("receiver gone")
	}
	n := min(c.cut, len(events))
	c.events = append(c.events, events[:n]...)
	c.cut = -1
	return &audit.PartialWriteError{Written: n, Err: errors.New("receiver gone")}
}

// TestPartialWriteLeavesOnlyTheRestSpooled: a sink that stored part of a
// batch before failing has that part taken off the host's queue; the spool
// holds only the rest, and the next start sends each event exactly once.
func TestPartialWriteLeavesOnlyTheRestSpooled(t *testing.T) {
	dir := t.TempDir()
	cs := &cutSink{cut: 37}
	b, _, _ := newBusWithSink(t, dir, Options{ShutdownTimeout: 300 * time.Millisecond, BatchWait: 50 * time.Millisecond}, cs)
	for i := 0; i < 100; i++ {
		if err := b.Emit(context.Background(), info(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	_ = b.Close("receiver gone")
	first := cs.got()
	if len(first) == 0 || len(first) > 37 {
		t.Fatalf("the sink stored %d events", len(first))
	}
	fresh := &memSink{}
	b2 := newBus(t, dir, Options{}, fresh)
	if err := b2.Close("done"); err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]int{}
	for _, e := range append(first, fresh.got()...) {
		seen[e.Seq]++
	}
	last := fresh.got()[len(fresh.got())-1].Seq
	for seq := uint64(1); seq <= last; seq++ {
		if seen[seq] != 1 {
			t.Errorf("seq %d delivered %d times", seq, seen[seq])
		}
	}
}

// TestConcurrentCriticalEmitsWithTinyEpochs emits CRITICAL and INFO events
// from several goroutines with an epoch every three records, under -race:
// the bus, the state writer and the epoch ticker all save the chain state.
// No race, every seq handed out once, and the state on disk never goes back
// to an older epoch than the bus is in.
func TestConcurrentCriticalEmitsWithTinyEpochs(t *testing.T) {
	dir := t.TempDir()
	s := &memSink{}
	b := newBus(t, dir, Options{Limits: trail.Limits{EpochEvents: 3, EpochDuration: 50 * time.Millisecond, CheckpointEvents: 2, CheckpointInterval: 20 * time.Millisecond}}, s)
	var wg sync.WaitGroup
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				e := info(t, i)
				if i%3 == 0 {
					e = critical(t)
				}
				if err := b.Emit(context.Background(), e); err != nil {
					t.Error(err)
					return
				}
				if i%10 == 0 {
					// Disk first: the bus only moves on, so what is on
					// disk must never be ahead of it afterwards.
					st, key, ok, err := (&chainStore{dir: dir}).load()
					if key != nil {
						key.Destroy()
					}
					b.mu.Lock()
					epoch := b.seq.tlog.Epoch()
					b.mu.Unlock()
					if err == nil && ok && st.Epoch > epoch {
						t.Errorf("state on disk in epoch %d, the bus in %d", st.Epoch, epoch)
					}
				}
			}
		}()
	}
	wg.Wait()
	if err := b.Close("done"); err != nil {
		t.Fatal(err)
	}
	st, key, ok, err := (&chainStore{dir: dir}).load()
	if err != nil || !ok {
		t.Fatalf("load: %v %v", ok, err)
	}
	key.Destroy()
	got := s.got()
	if last := got[len(got)-1]; st.Seq != last.Seq || st.Epoch < last.Chain.Epoch || st.Epoch > last.Chain.Epoch+1 || !st.Clean {
		t.Errorf("state on disk: seq %d epoch %d clean %v; the last record: seq %d epoch %d", st.Seq, st.Epoch, st.Clean, last.Seq, last.Chain.Epoch)
	}
	for i, e := range got {
		if e.Seq != uint64(i+1) {
			t.Fatalf("record %d has seq %d", i, e.Seq)
		}
	}
	if rep := verifyRecords(t, dir, got); rep.Epoch < 3 {
		t.Errorf("only %d epochs", rep.Epoch)
	}
}

// TestOneFailureOneRecord: a failure whose text only counts something
// ("3 messages held", "4 messages held") is one failure; another kind of
// failure while the sink is down is recorded too.
func TestOneFailureOneRecord(t *testing.T) {
	a, b := errors.New("3 messages held for 127.0.0.1:514: connection refused"), errors.New("40 messages held for 127.0.0.1:514: connection refused")
	if !sameFailure(a, b) {
		t.Error("a changing count made a new failure")
	}
	if sameFailure(a, errors.New("/t/audit.log: the trail file was deleted while open")) {
		t.Error("two kinds of failure taken as one")
	}
}
