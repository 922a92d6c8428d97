package audit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/vramward/vramward/sdk/audit"
)

// everySink keeps every record each Write hands it, re-sends included, so
// that a test sees a record delivered twice or out of order; its first
// failFirst writes fail and, while gate is set, a write waits for it. With
// skipResends it skips (and counts) records up to the last it kept, as
// the file sink does.
type everySink struct {
	memSink
	mu          sync.Mutex
	seqs        []uint64
	failFirst   int
	off         bool
	skipResends bool
	resends     int
}

func (s *everySink) Write(ctx context.Context, records []audit.Record) error {
	s.mu.Lock()
	gate := s.gate
	fail := s.failFirst > 0
	if fail {
		s.failFirst--
	}
	s.mu.Unlock()
	if err := passGate(ctx, gate); err != nil {
		return err
	}
	if fail {
		return errors.New("disk said no, once")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range records {
		if n := len(s.seqs); s.skipResends && n > 0 && records[i].Seq <= s.seqs[n-1] {
			s.resends++
			continue
		}
		s.seqs = append(s.seqs, records[i].Seq)
	}
	return nil
}

func (s *everySink) offNode() bool { return s.off }

func (s *everySink) setGate(g chan struct{}) {
	s.mu.Lock()
	s.gate = g
	s.mu.Unlock()
}

// received checks that the sink got seqs from..to, each once and in order.
func (s *everySink) received(t *testing.T, from, to uint64) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	want := from
	for i, seq := range s.seqs {
		if seq != want {
			t.Fatalf("record %d the sink got is seq %d, want %d (every seq once, in order; got %v)", i, seq, want, s.seqs)
		}
		want++
	}
	if want != to+1 {
		t.Fatalf("the sink got seqs %d to %d, want up to %d", from, want-1, to)
	}
}

func (s *everySink) last() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.seqs) == 0 {
		return 0
	}
	return s.seqs[len(s.seqs)-1]
}

// idleBus starts a bus on s and waits until the start's records are
// delivered, so that s's queue is empty.
func idleBus(t *testing.T, s *everySink, opts Options) (*Bus, *sinkDelivery) {
	t.Helper()
	b, _, _ := newBusWithSink(t, t.TempDir(), opts, s)
	d := b.sinks[0]
	eventually(t, "the start's records delivered", func() bool { return d.q.size() == 0 })
	return b, d
}

// closeAndCheck shuts b down and checks that s got every seq b sealed,
// once and in order.
func closeAndCheck(t *testing.T, b *Bus, s *everySink) {
	t.Helper()
	if err := b.Close("test"); err != nil {
		t.Fatal(err)
	}
	s.received(t, 1, b.Trail().Seq)
}

// awaitLoopDelivery waits until s has every record b sealed so far.
func awaitLoopDelivery(t *testing.T, b *Bus, s *everySink) {
	t.Helper()
	seq := b.Trail().Seq
	eventually(t, "the loop delivered the batch", func() bool { return s.last() >= seq })
}

// TestCriticalEmitterDeliversToAnIdleSinkItself: a CRITICAL emit to a sink
// with nothing queued delivers the record and its checkpoint itself, and
// what the sink gets stays every seq once, in order.
func TestCriticalEmitterDeliversToAnIdleSinkItself(t *testing.T) {
	s := &everySink{}
	b, d := idleBus(t, s, Options{})
	before := d.byEmitters.Load()
	for i := 0; i < 5; i++ {
		if err := b.Emit(context.Background(), critical(t)); err != nil {
			t.Fatal(err)
		}
	}
	if n := d.byEmitters.Load() - before; n != 5 {
		t.Fatalf("%d of 5 CRITICAL emits to an idle sink were delivered by their emitter", n)
	}
	closeAndCheck(t, b, s)
}

// TestClaimedDeliveriesKeepOrderUnderLoad: emitters racing CRITICAL and
// other events, some delivering to the sink themselves and some through
// its loop, never make the sink get a record twice, out of order or not
// at all.
func TestClaimedDeliveriesKeepOrderUnderLoad(t *testing.T) {
	s := &everySink{}
	b, _, _ := newBusWithSink(t, t.TempDir(), Options{}, s)
	var wg sync.WaitGroup
	errs := make(chan error, 8*40)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				e := info(t, i)
				if i%4 == g%4 {
					e = critical(t)
				}
				if err := b.Emit(context.Background(), e); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	closeAndCheck(t, b, s)
	if b.sinks[0].byEmitters.Load() == 0 {
		t.Log("no emitter found the sink idle this run") // the loop delivered everything
	}
}

// TestClaimedDeliveryThatFailsGoesBackToTheLoop: a sink that refuses the
// emitter's own delivery fails the emit, as a refused delivery by the loop
// does, and gets the batch again from its delivery loop, once.
func TestClaimedDeliveryThatFailsGoesBackToTheLoop(t *testing.T) {
	s := &everySink{}
	b, d := idleBus(t, s, Options{})
	s.mu.Lock()
	s.failFirst = 1
	s.mu.Unlock()
	before := d.byEmitters.Load()
	if err := b.Emit(context.Background(), critical(t)); err == nil {
		t.Fatal("a CRITICAL emit whose sink refused it returned nil")
	}
	if d.byEmitters.Load() != before {
		t.Fatal("a refused delivery was counted as the emitter's")
	}
	awaitLoopDelivery(t, b, s)
	closeAndCheck(t, b, s)
}

// TestClaimedDeliveryReturnsAtCriticalTimeout: an emitter delivering to a
// sink that hangs gives up at critical_timeout, and the sink, once it
// answers again, has the batch, in order: the write the emitter gave up on
// may still land, and the loop sends the batch again, which a sink skips
// as it skips any re-send after a failure.
func TestClaimedDeliveryReturnsAtCriticalTimeout(t *testing.T) {
	s := &everySink{skipResends: true}
	b, _ := idleBus(t, s, Options{CriticalTimeout: 200 * time.Millisecond})
	gate := make(chan struct{})
	s.setGate(gate)
	start := time.Now()
	err := b.Emit(context.Background(), critical(t))
	if err == nil {
		t.Fatal("a CRITICAL emit succeeded on a sink that hangs")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("the emit returned after %s; critical_timeout is 200ms", took)
	}
	s.setGate(nil)
	close(gate)
	awaitLoopDelivery(t, b, s)
	closeAndCheck(t, b, s)
}

// TestNoClaimedDeliveryOffTheNode: a sink whose copy is off the node gets
// its checkpoints only once the state holding them is durable, which only
// its loop waits for: an emitter never delivers to it.
func TestNoClaimedDeliveryOffTheNode(t *testing.T) {
	s := &everySink{off: true}
	b, d := idleBus(t, s, Options{})
	if err := b.Emit(context.Background(), critical(t)); err != nil {
		t.Fatal(err)
	}
	if n := d.byEmitters.Load(); n != 0 {
		t.Fatalf("an emitter delivered %d batches to an off-node sink", n)
	}
	closeAndCheck(t, b, s)
}
