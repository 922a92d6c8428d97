package audit

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vramward/vramward/host/trail"
	"github.com/vramward/vramward/sdk/audit"
)

// TestEmittersFasterThanTheStateDiskWaitAtTheEpochGate: every fdatasync
// takes 20 ms, epochs end every 50 records and the queue holds 10. The
// gate fills long before each new epoch's state is durable; the emitters
// wait for it rather than lose events (before, the 11th event after an
// epoch's end was refused with ErrStateUnwritten), and every record
// arrives, in order, under a chain that verifies.
func TestEmittersFasterThanTheStateDiskWaitAtTheEpochGate(t *testing.T) {
	dir := t.TempDir()
	slowDurableSlots(t, "epoch")
	s := &memSink{}
	b, _, _ := newBusWith(t, dir, Options{QueueSize: 10, Limits: trail.Limits{EpochEvents: 50, EpochDuration: time.Hour, CheckpointEvents: 20, CheckpointInterval: time.Hour}}, s)
	const n = 300
	for i := 0; i < n; i++ {
		if err := b.Emit(context.Background(), info(t, i)); err != nil {
			t.Fatalf("emit %d: %v", i, err)
		}
	}
	if err := b.Close("done"); err != nil {
		t.Fatal(err)
	}
	got := 0
	for _, e := range s.got() {
		if e.Type == audit.SealVerified {
			got++
		}
	}
	if got != n {
		t.Fatalf("the sink holds %d of the %d events", got, n)
	}
	verifyRecords(t, dir, s.got())
}

// TestAFullEpochGateOnAHungDiskRefusesByTheDeadline: with the state's
// fdatasync hung at an epoch's end, an emit that finds the gate full
// waits for it only until critical_timeout, then is refused before it is
// sealed (ErrStateUnwritten), instead of holding the log for ever.
func TestAFullEpochGateOnAHungDiskRefusesByTheDeadline(t *testing.T) {
	s := &memSink{}
	b := newBus(t, t.TempDir(), Options{QueueSize: 4, CriticalTimeout: 200 * time.Millisecond,
		Limits: trail.Limits{EpochEvents: 3, EpochDuration: time.Hour, CheckpointEvents: 100, CheckpointInterval: time.Hour}}, s)
	stuck := make(chan struct{})
	hook := func(int) error { <-stuck; return nil }
	fdatasyncHook.Store(&hook)
	var err error
	start := time.Now()
	for i := 0; i < 20 && err == nil; i++ {
		err = b.Emit(context.Background(), info(t, i))
	}
	if !errors.Is(err, ErrStateUnwritten) {
		t.Fatalf("with the state's disk hung, emits gave %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("refused after %s, critical_timeout is 200ms", d)
	}
	fdatasyncHook.Store(nil)
	close(stuck)
	_ = b.Close("done") // it reports the refused event as never delivered
}
