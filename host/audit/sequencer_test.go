package audit

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vramward/vramward/host/trail"
	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audittest"
)

// newSequencer opens a sequencer alone, with no bus and no sink.
func newSequencer(t *testing.T, dir string, limits trail.Limits) *sequencer {
	t.Helper()
	m, err := newBusMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	s, err := openSequencer(Options{StateDir: dir, Origin: trail.Origin("seq"), Limits: limits, QueueSize: 8, Logger: hclog.NewNullLogger(), ServiceID: "vramward"}, m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.start(); err != nil {
		t.Fatal(err)
	}
	return s
}

// throughGate is a step with what the epoch gate holds once it opens, as
// the bus hands it out: the records from an epoch's end on wait for the
// state holding the new key to be durable.
func throughGate(s *sequencer, st step) step {
	if s.gate.shut {
		<-s.gate.wait.done
		st.records = append(st.records, s.pass(nil, false)...)
	}
	return st
}

func stepEvents(st step) []audit.Event {
	out := make([]audit.Event, len(st.records))
	for i := range st.records {
		out[i] = st.records[i].Event
	}
	return out
}

// The sequencer, called as the bus calls it, is a function from events to
// steps: each step's records continue the seqs of the one before; a
// CRITICAL record is followed in its own step by the checkpoint that
// covers it, with a future that answers once the state holding that
// checkpoint is durable (and the state on disk then holds it); epochs of
// three records end on time; what all steps gave out is one trail that
// verifies with the public key.
func TestSequencerSteps(t *testing.T) {
	dir := t.TempDir()
	s := newSequencer(t, dir, trail.Limits{EpochEvents: 3, EpochDuration: time.Hour, CheckpointEvents: 2, CheckpointInterval: time.Hour})
	var all []audit.Event
	for i := 0; i < 40; i++ {
		e := info(t, i)
		if i%5 == 4 {
			e = critical(t)
		}
		st, err := s.emit(&e, e.Severity == audit.Critical, time.Time{})
		if err != nil || st.critical != nil {
			t.Fatalf("emit %d: %v %v", i, err, st.critical)
		}
		st = throughGate(s, st)
		if st.sealed == nil || st.records[0].Seq != st.sealed.Seq {
			t.Fatalf("emit %d: the step does not start with the record it sealed", i)
		}
		for j, r := range st.records {
			if want := uint64(len(all) + j + 1); r.Seq != want {
				t.Fatalf("emit %d: record %d of its step has seq %d, want %d", i, j, r.Seq, want)
			}
		}
		if e.Severity == audit.Critical {
			if len(st.records) < 2 || st.records[1].Type != audit.AuditCheckpoint {
				t.Fatalf("emit %d: a CRITICAL record without its checkpoint in the step: %v", i, stepEvents(st))
			}
			if st.durable == nil {
				t.Fatalf("emit %d: a CRITICAL step with nothing to wait for", i)
			}
			if err := <-st.durable; err != nil {
				t.Fatal(err)
			}
			body, key, ok, err := (&chainStore{dir: dir}).load()
			if err != nil || !ok {
				t.Fatalf("load: %v %v", ok, err)
			}
			key.Destroy()
			if c, err := trail.ParseCheckpoint(body.LastCheckpoint); err != nil || c.Size < st.sealed.Seq {
				t.Fatalf("emit %d: durable, but the state's checkpoint does not cover seq %d", i, st.sealed.Seq)
			}
		}
		all = append(all, stepEvents(st)...)
	}
	all = append(all, stepEvents(throughGate(s, s.next(nil, true)))...)
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	if rep := verifyRecords(t, dir, all); rep.Epoch < 10 {
		t.Fatalf("%d epochs in %d records of three-record epochs", rep.Epoch, len(all))
	}
}

// While the state cannot be written, a step gives the sinks nothing (what
// it sealed is held, so no seq leaves that a restart could hand out
// again), a CRITICAL step fails at once, and a full hold refuses the next
// event before it takes a seq; the first save that succeeds releases every
// held record, in order, ahead of the new one.
func TestSequencerHoldsWhileTheStateFails(t *testing.T) {
	s := newSequencer(t, t.TempDir(), trail.Limits{EpochEvents: 1000, EpochDuration: time.Hour, CheckpointEvents: 1000, CheckpointInterval: time.Hour})
	defer s.close()
	broken := func() error { return errors.New("EIO") }
	writeHook.Store(&broken)
	defer writeHook.Store(nil)
	// The first write to fail is the CRITICAL one's (nothing before it
	// needed a save).
	e := critical(t)
	st, err := s.emit(&e, true, time.Time{})
	if err != nil || st.critical == nil || len(st.records) != 0 {
		t.Fatalf("a CRITICAL emit with its state unwritten: err %v, critical %v, %d records out", err, st.critical, len(st.records))
	}
	var last uint64
	for i := 0; ; i++ {
		e := info(t, i)
		st, err := s.emit(&e, false, time.Time{})
		if errors.Is(err, ErrStateUnwritten) {
			break
		}
		if err != nil || len(st.records) != 0 {
			t.Fatalf("emit %d while failing: %v, %d records out", i, err, len(st.records))
		}
		last = st.sealed.Seq
		if i > 100 {
			t.Fatal("the hold never filled")
		}
	}
	writeHook.Store(nil)
	s.stateTried = time.Time{} // the next emit tries at once
	e = info(t, 0)
	st, err = s.emit(&e, false, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range st.records {
		if r.Seq != uint64(i+1) {
			t.Fatalf("released record %d has seq %d", i, r.Seq)
		}
	}
	if n := st.records[len(st.records)-1].Seq; n <= last {
		t.Fatalf("the new record (seq %d) is not after the held ones (last %d)", n, last)
	}
}

// TestSequencerRace: through the bus, with -race, six emitters of INFO and
// CRITICAL events, epochs of four records and checkpoints every two, while
// the state's fdatasync hangs for a second in their midst: every CRITICAL
// emit returns by critical_timeout, failed while the disk hangs (no save
// at an epoch's end waits for the disk under the bus's lock: the state
// writer makes it durable), and what the sink got is one gapless trail
// that verifies.
func TestSequencerRace(t *testing.T) {
	dir := t.TempDir()
	sink := &memSink{}
	const timeout = 300 * time.Millisecond
	b := newBus(t, dir, Options{CriticalTimeout: timeout, Limits: trail.Limits{EpochEvents: 4, EpochDuration: 50 * time.Millisecond, CheckpointEvents: 2, CheckpointInterval: 20 * time.Millisecond}}, sink)
	var stuck atomic.Bool
	release := make(chan struct{})
	hook := func(int) error {
		if stuck.Load() {
			<-release
		}
		return nil
	}
	fdatasyncHook.Store(&hook)
	defer fdatasyncHook.Store(nil)
	var wg sync.WaitGroup
	var failed, slow atomic.Int32
	var done atomic.Bool
	// Six emitters of both, and one of CRITICAL events only (the others
	// may all wait for the log with an INFO event while it hangs).
	for g := 0; g < 7; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Until a while after the hang, and at most 2,000 emits each.
			for i := 0; i < 2000 && !done.Load(); i++ {
				e := info(t, i)
				if i%3 == 0 || g == 6 {
					e = critical(t)
				}
				t0 := time.Now()
				err := b.Emit(context.Background(), e)
				if d := time.Since(t0); e.Severity == audit.Critical && d > timeout+300*time.Millisecond {
					slow.Add(1)
					if err == nil {
						t.Errorf("a CRITICAL emit succeeded after %s, past critical_timeout", d)
					}
				}
				if err != nil {
					if e.Severity != audit.Critical && !errors.Is(err, ErrStateUnwritten) {
						t.Errorf("an INFO emit failed: %v", err)
					}
					failed.Add(1)
				}
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	stuck.Store(true)
	time.Sleep(time.Second)
	stuck.Store(false)
	close(release)
	time.Sleep(200 * time.Millisecond)
	done.Store(true)
	wg.Wait()
	if n := slow.Load(); n > 0 {
		t.Errorf("%d CRITICAL emits took longer than critical_timeout and 300 ms", n)
	}
	if failed.Load() == 0 {
		t.Error("no emit failed while the state's fdatasync hung: the hang was not in their way")
	}
	if err := b.Close("done"); err != nil && !errors.Is(err, ErrStateUnwritten) {
		t.Fatal(err)
	}
	verifyGapless(t, dir, sink.got())
}

// A CRITICAL emit that cannot even get the log by critical_timeout (it is
// held through a save on a hung disk) returns then, failed and counted on
// every sink, without a seq: the trail has no hole where it would have
// been.
func TestCriticalGivesUpWaitingForTheLog(t *testing.T) {
	dir := t.TempDir()
	sink := &memSink{}
	b, reg, _ := newBusWith(t, dir, Options{CriticalTimeout: 200 * time.Millisecond}, sink)
	before := audittest.MetricSum(t, reg, "vramward_audit_critical_emit_failures_total", "sink", "s0")
	b.mu.Lock()
	t0 := time.Now()
	err := b.Emit(context.Background(), critical(t))
	d := time.Since(t0)
	b.mu.Unlock()
	if err == nil || d > time.Second {
		t.Fatalf("a CRITICAL emit with the log held: %v after %s", err, d)
	}
	if got := audittest.MetricSum(t, reg, "vramward_audit_critical_emit_failures_total", "sink", "s0"); got != before+1 {
		t.Fatalf("critical emit failures %v, want %v", got, before+1)
	}
	if err := b.Emit(context.Background(), critical(t)); err != nil {
		t.Fatal(err)
	}
	if err := b.Close("done"); err != nil {
		t.Fatal(err)
	}
	verifyGapless(t, dir, sink.got())
}

// verifyGapless checks that a sink got every seq from 1, once, in order,
// and that they verify as one trail.
func verifyGapless(t *testing.T, dir string, got []audit.Event) {
	t.Helper()
	for i, e := range got {
		if e.Seq != uint64(i+1) {
			t.Fatalf("record %d has seq %d", i, e.Seq)
		}
	}
	verifyRecords(t, dir, got)
}

// Seqs never pass what a durable slot reserves, and the next reservation
// is made ahead of need, in the background: once half of one is used, a
// slot reserving further is written and the state writer makes it
// durable, so that the emitters do not wait for the disk when they reach
// the old one.
func TestReservationsAreMadeAheadOfNeed(t *testing.T) {
	s := newSequencer(t, t.TempDir(), trail.Limits{EpochEvents: 1 << 30, EpochDuration: time.Hour, CheckpointEvents: 1 << 30, CheckpointInterval: time.Hour})
	defer s.close()
	durable := func() uint64 {
		s.store.mu.Lock()
		defer s.store.mu.Unlock()
		return s.store.reserved
	}
	first := durable()
	for i := 0; i < 3*seqReservation; i++ {
		e := info(t, i)
		st, err := s.emit(&e, false, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if r := durable(); st.sealed.Seq >= r {
			t.Fatalf("seq %d handed out with %d reserved durably", st.sealed.Seq, r)
		}
	}
	seq := s.tlog.Seq()
	eventually(t, "a reservation ahead of need made durable", func() bool { return durable() > seq+seqReservation/2 })
	if durable() <= first {
		t.Fatal("the reservation never moved")
	}
}
