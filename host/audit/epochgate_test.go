package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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

// TestASecondEpochEndWaitsForItsOwnKey: two epochs end while the state
// holding the first new key is not durable yet. When it is, the gate
// releases what follows the first end, but not the second end's
// checkpoint: that one certifies a key only a later state holds, and
// waits for it. Before, the first answer released both.
func TestASecondEpochEndWaitsForItsOwnKey(t *testing.T) {
	dir := t.TempDir()
	var limit, durable atomic.Uint64 // the newest epoch allowed to reach the disk; what did
	epochOf := regexp.MustCompile(`"epoch":(\d+)`)
	hook := func(fd int) error {
		data, err := os.ReadFile(fmt.Sprintf("/proc/self/fd/%d", fd))
		if err != nil {
			return err
		}
		m := epochOf.FindSubmatch(data)
		if m == nil {
			return unix.Fdatasync(fd)
		}
		epoch, _ := strconv.ParseUint(string(m[1]), 10, 64)
		for i := 0; epoch > limit.Load(); i++ {
			if i == 10000 {
				return errors.New("test: the state's disk was held for 10 s")
			}
			time.Sleep(time.Millisecond)
		}
		if err := unix.Fdatasync(fd); err != nil {
			return err
		}
		for old := durable.Load(); epoch > old && !durable.CompareAndSwap(old, epoch); old = durable.Load() {
		}
		return nil
	}
	sink := &checkpointWatch{durable: &durable, ahead: func(r *audit.Record, durable uint64) (bool, bool) {
		var f audit.AuditCheckpointFields
		ends := audit.Decode(&r.Event, &f) == nil && f.NextKey != ""
		return ends, durable <= r.Chain.Epoch
	}}
	b, _, _ := newBusWithSink(t, dir, Options{QueueSize: 1000, Limits: trail.Limits{EpochEvents: 4, EpochDuration: time.Hour, CheckpointEvents: 100, CheckpointInterval: time.Hour}}, sink)
	first := b.Trail().Epoch
	limit.Store(first)
	durable.Store(first)
	fdatasyncHook.Store(&hook)
	t.Cleanup(func() { fdatasyncHook.Store(nil) })

	for i := 0; b.Trail().Epoch < first+2; i++ {
		if i == 50 {
			t.Fatal("two epochs did not end in 50 events")
		}
		if err := b.Emit(context.Background(), info(t, i)); err != nil {
			t.Fatalf("emit %d: %v", i, err)
		}
	}
	limit.Store(first + 1) // the first new key's state may reach the disk
	eventually(t, "the first epoch end at the sink", func() bool { return sink.all.Load() >= 1 })
	time.Sleep(50 * time.Millisecond) // what the first answer releases has arrived
	if n := sink.all.Load(); n != 1 {
		t.Fatalf("%d epoch ends reached the sink while only the first new key's state is durable", n)
	}
	limit.Store(1 << 62)
	if err := b.Close("done"); err != nil {
		t.Fatal(err)
	}
	if n := sink.early.Load(); n > 0 {
		t.Fatalf("%d of %d checkpoints ending an epoch reached the sink before the next key's state was durable", n, sink.all.Load())
	}
	if sink.all.Load() < 2 {
		t.Fatalf("%d epoch ends reached the sink", sink.all.Load())
	}
	verifyRecords(t, dir, sink.got())
}
