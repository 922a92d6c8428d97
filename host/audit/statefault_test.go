package audit

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vramward/vramward/host/trail"
	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audittest"
)

// failState makes every slot write and fdatasync of the log's state fail
// with EIO while on is set, as a failing disk under state_dir would.
func failState(t *testing.T) *atomic.Bool {
	t.Helper()
	var on atomic.Bool
	w := func() error {
		if on.Load() {
			return syscall.EIO
		}
		return nil
	}
	s := func(fd int) error {
		if on.Load() {
			return syscall.EIO
		}
		return syscall.Fdatasync(fd)
	}
	writeHook.Store(&w)
	fdatasyncHook.Store(&s)
	t.Cleanup(func() { writeHook.Store(nil); fdatasyncHook.Store(nil) })
	return &on
}

// crash stands for a kill -9 of the host: nothing more is sealed or saved
// (not even state_dir/checkpoint), and no clean state is written. What the sinks were already handed still
// reaches them, which makes the test stricter than a kill: every record a
// sink was given counts as one it may hold.
func crash(b *Bus) {
	b.mu.Lock()
	b.closed = true
	close(b.stopTick)
	b.mu.Unlock()
	cs := b.seq.store
	cs.mu.Lock()
	cs.closed = true
	cs.mu.Unlock()
}

func seqsOf(runs ...[]audit.Event) map[uint64]int {
	seen := map[uint64]int{}
	for _, run := range runs {
		for _, e := range run {
			seen[e.Seq]++
		}
	}
	return seen
}

// TestFailedStateWriteNeverReissuesASeq: the state's writes fail as the log
// passes its seq reservation. Nothing past the reservation reaches a sink,
// the host says it is degraded, and after a crash the next run hands out no
// seq any sink holds; the trail verifies once the crash's loss is accepted.
// Before, the reservation moved in memory on the failed save, records past
// it went out, and the next run reissued them.
func TestFailedStateWriteNeverReissuesASeq(t *testing.T) {
	dir := t.TempDir()
	failing := failState(t)
	s1 := &memSink{}
	b1, reg, _ := newBusWith(t, dir, Options{QueueSize: seqReservation * 2}, s1)
	failing.Store(true)
	const n = seqReservation + 500
	for i := 0; i < n; i++ {
		if err := b1.Emit(context.Background(), info(t, i)); err != nil {
			t.Fatalf("emit %d: %v", i, err)
		}
	}
	if since, err := b1.StateHealth(); err == nil || since.IsZero() {
		t.Fatal("the state's writes fail and the bus does not say so")
	}
	if got := audittest.MetricSum(t, reg, "vramward_audit_state_degraded"); got != 1 {
		t.Errorf("vramward_audit_state_degraded = %v", got)
	}
	if got := audittest.MetricSum(t, reg, "vramward_audit_state_write_failures_total"); got < 1 {
		t.Errorf("vramward_audit_state_write_failures_total = %v", got)
	}
	// Give the sink time to take anything it was handed.
	time.Sleep(300 * time.Millisecond)
	for _, e := range s1.got() {
		if e.Seq > seqReservation {
			t.Fatalf("seq %d reached a sink past the reservation (%d) that the failed save did not write", e.Seq, seqReservation)
		}
	}
	crash(b1)
	failing.Store(false)

	s2 := &memSink{}
	b2 := newBus(t, dir, Options{}, s2)
	for i := 0; i < 10; i++ {
		if err := b2.Emit(context.Background(), info(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b2.Close("done"); err != nil {
		t.Fatal(err)
	}
	for seq, k := range seqsOf(s1.got(), s2.got()) {
		if k > 1 {
			t.Fatalf("seq %d issued %d times across the crash", seq, k)
		}
	}
	verifyRecordsAfterCrash(t, dir, s1.got(), s2.got())
}

// TestStateFailureHoldsThenReleasesInOrder: while the state cannot be
// written the bus is degraded and holds records back; once a write succeeds
// they reach the sink, every seq once, in order, and the trail verifies.
func TestStateFailureHoldsThenReleasesInOrder(t *testing.T) {
	dir := t.TempDir()
	failing := failState(t)
	s := &memSink{}
	b := newBus(t, dir, Options{Limits: trail.Limits{CheckpointEvents: 10}}, s)
	failing.Store(true)
	for i := 0; i < 50; i++ { // checkpoints every 10 records: each save fails
		if err := b.Emit(context.Background(), info(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.StateHealth(); err == nil {
		t.Fatal("not degraded with the state's writes failing")
	}
	held := len(s.got())
	failing.Store(false)
	eventually(t, "the held records delivered", func() bool { return len(s.got()) > held+40 })
	if _, err := b.StateHealth(); err != nil {
		t.Fatalf("still degraded after a save succeeded: %v", err)
	}
	if err := b.Close("done"); err != nil {
		t.Fatal(err)
	}
	got := s.got()
	inSeqOrder(t, got)
	verifyRecords(t, dir, got)
}

// TestCriticalWithUnwrittenStateIsCountedAndKept: a CRITICAL event whose
// state write fails fails its emit at once and is counted on every sink;
// it is not dropped: once the state is written it reaches the sinks and the
// trail holds it. Before, it was sealed and then dropped, uncounted.
func TestCriticalWithUnwrittenStateIsCountedAndKept(t *testing.T) {
	dir := t.TempDir()
	failing := failState(t)
	s := &memSink{}
	b, reg, _ := newBusWith(t, dir, Options{}, s)
	failing.Store(true)
	ev := critical(t)
	err := b.Emit(context.Background(), ev)
	if err == nil || !errors.Is(err, syscall.EIO) {
		t.Fatalf("a CRITICAL emit with the state unwritable returned %v", err)
	}
	if got := audittest.MetricSum(t, reg, "vramward_audit_critical_emit_failures_total", "sink", "s0"); got != 1 {
		t.Errorf("critical_emit_failures_total = %v, want 1", got)
	}
	failing.Store(false)
	if err := b.Emit(context.Background(), critical(t)); err != nil {
		t.Fatalf("a CRITICAL emit once the state is written again: %v", err)
	}
	if err := b.Close("done"); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range s.got() {
		if e.Type == audit.IntegrityViolation {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("the sink holds %d of the 2 CRITICAL events", n)
	}
	verifyRecords(t, dir, s.got())
}

// TestHeldRecordsFillingAQueueAreRefusedAndCounted: with the state failing
// for long, the held records are bounded by the queue size; beyond it an
// emit is refused before it is sealed (no seq used) and counted.
func TestHeldRecordsFillingAQueueAreRefusedAndCounted(t *testing.T) {
	failing := failState(t)
	s := &memSink{}
	b, reg, _ := newBusWith(t, t.TempDir(), Options{QueueSize: 20}, s)
	failing.Store(true)
	// The first save to fail is the CRITICAL one's.
	if err := b.Emit(context.Background(), critical(t)); err == nil {
		t.Fatal("CRITICAL emit succeeded")
	}
	refused := 0
	for i := 0; i < 40; i++ {
		if err := b.Emit(context.Background(), info(t, i)); errors.Is(err, ErrStateUnwritten) {
			refused++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if refused == 0 {
		t.Fatal("no emit refused with the held records past the queue size")
	}
	if got := audittest.MetricSum(t, reg, "vramward_audit_emit_failures_total", "sink", "s0", "severity", "INFO"); got < float64(refused) {
		t.Errorf("emit_failures_total{INFO} = %v after %d refused", got, refused)
	}
	failing.Store(false)
	if err := b.Close("done"); err != nil {
		t.Fatal(err)
	}
	got := s.got()
	inSeqOrder(t, got) // a refused emit used no seq
}

// TestClockJumpIsRecorded: the wall clock set back an hour while the host
// runs is in the trail as AuditClockJumped, with how far it moved.
func TestClockJumpIsRecorded(t *testing.T) {
	s := &memSink{}
	b := newBus(t, t.TempDir(), Options{}, s)
	var offset atomic.Int64
	b.mu.Lock()
	b.seq.tlog.SetWallClock(func() time.Time { return time.Now().Round(0).Add(time.Duration(offset.Load())) })
	b.mu.Unlock()
	offset.Store(int64(-time.Hour))
	eventually(t, "AuditClockJumped", func() bool { return hasType(s.got(), audit.AuditClockJumped) })
	if err := b.Close("done"); err != nil {
		t.Fatal(err)
	}
	for _, e := range s.got() {
		if e.Type == audit.AuditClockJumped {
			if v, _ := e.Field("skew_seconds"); v.Int() != -3600 {
				t.Errorf("skew_seconds %d", v.Int())
			}
		}
	}
}

// TestTwoCrashesInARow: the first run's records after its last saved state
// reach the sink; the second run crashes before its sink took anything (its
// AuditRecovered, which names the first run's loss, is in no copy); the
// third recovers from the second's state. The copy verifies once the loss
// is accepted, the first run's unsaved records named as not part of the
// log. Before, the verifier called the tree the third run resumes from a
// fork.
func TestTwoCrashesInARow(t *testing.T) {
	dir := t.TempDir()
	s1 := &memSink{}
	b1 := newBus(t, dir, Options{}, s1)
	if err := b1.Emit(context.Background(), critical(t)); err != nil { // a checkpoint, and the state saved with it
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ { // after the saved state
		if err := b1.Emit(context.Background(), info(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "delivery", func() bool { return len(s1.got()) >= 12 })
	crash(b1)
	stuck := &memSink{}
	stuck.set(nil, make(chan struct{}))
	b2 := newBus(t, dir, Options{}, stuck)
	crash(b2)
	s3 := &memSink{}
	b3 := newBus(t, dir, Options{}, s3)
	if err := b3.Emit(context.Background(), info(t, 99)); err != nil {
		t.Fatal(err)
	}
	if err := b3.Close("done"); err != nil {
		t.Fatal(err)
	}
	if len(stuck.got()) != 0 {
		t.Fatal("the second run's sink took records")
	}
	rep := verifyRecordsAfterCrash(t, dir, s1.got(), s3.got())
	found := false
	for _, n := range rep.Notes {
		found = found || strings.Contains(n, "not part of the log")
	}
	if !found {
		t.Errorf("the first run's unsaved records are not named: %q", rep.Notes)
	}
}

// inSeqOrder fails unless events run seq by seq, each once.
func inSeqOrder(t *testing.T, events []audit.Event) {
	t.Helper()
	for i := 1; i < len(events); i++ {
		if events[i].Seq != events[i-1].Seq+1 {
			t.Fatalf("seq %d follows %d", events[i].Seq, events[i-1].Seq)
		}
	}
}
