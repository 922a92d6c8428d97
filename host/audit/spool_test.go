package audit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vramward/vramward/sdk/audittest"
)

// TestSpoolCapUnderABacklog: a sink that takes nothing while 200,000
// events arrive. The spool never passes spool_max_bytes (what does not fit
// is counted as failed), the shutdown rewrite streams instead of reading
// the spool whole (the heap stays far under 100 MiB), and the next start
// delivers what was spooled in seq order.
func TestSpoolCapUnderABacklog(t *testing.T) {
	n := 200_000
	if testing.Short() {
		n = 20_000
	}
	dir := t.TempDir()
	held := &memSink{}
	held.set(nil, make(chan struct{}))
	const capBytes = 16 << 20
	b, reg, _ := newBusWith(t, dir, Options{ShutdownTimeout: 100 * time.Millisecond, QueueSize: 1000, SpoolMaxBytes: capBytes}, held)
	for i := 0; i < n; i++ {
		if err := b.Emit(context.Background(), info(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	spool := filepath.Join(dir, "spool-s0.jsonl")
	st, err := os.Stat(spool)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > capBytes {
		t.Fatalf("spool holds %d bytes, the cap is %d", st.Size(), capBytes)
	}
	dropped := audittest.MetricSum(t, reg, "vramward_audit_emit_failures_total", "sink", "s0")
	if dropped == 0 && int64(n)*250 > capBytes {
		t.Fatal("events that did not fit in the spool were not counted")
	}

	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	_ = b.Close("backlog")
	close(stop)
	wg.Wait()
	if grew := int64(peak.Load()) - int64(before.HeapInuse); grew > 100<<20 {
		t.Errorf("the shutdown rewrite grew the heap by %d MiB", grew>>20)
	}
	st2, err := os.Stat(spool)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d events: spool %d bytes before shutdown, %d after (the 1000 queued in memory in front); %v counted as not spooled; heap peak +%d MiB",
		n, st.Size(), st2.Size(), dropped, (int64(peak.Load())-int64(before.HeapInuse))>>20)

	fresh := &memSink{}
	b2 := newBus(t, dir, Options{ShutdownTimeout: 30 * time.Second}, fresh)
	if err := b2.Close("done"); err != nil {
		t.Fatal(err)
	}
	got := fresh.got()
	for i := 1; i < len(got); i++ {
		if got[i].Seq <= got[i-1].Seq {
			t.Fatalf("replayed out of order at %d: seq %d after %d", i, got[i].Seq, got[i-1].Seq)
		}
	}
	if got[0].Seq != 1 {
		t.Errorf("the replay starts at seq %d", got[0].Seq)
	}
}

// TestKillDuringSpoolRewriteLosesNothing: the shutdown rewrite of the spool
// dies between writing the new file and renaming it. What the old spool
// held is all still there, from its read position, and is delivered at the
// next start.
func TestKillDuringSpoolRewriteLosesNothing(t *testing.T) {
	dir := t.TempDir()
	held := &memSink{}
	held.set(nil, make(chan struct{}))
	b, _, _ := newBusWith(t, dir, Options{ShutdownTimeout: 100 * time.Millisecond, QueueSize: 100}, held)
	for i := 0; i < 1000; i++ {
		if err := b.Emit(context.Background(), info(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	spool := filepath.Join(dir, "spool-s0.jsonl")
	before, err := openSpool(spool, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	onDisk := before.pending
	if onDisk == 0 {
		t.Fatal("nothing was spooled")
	}
	spoolRewriteHook = func() error { return errors.New("killed") }
	defer func() { spoolRewriteHook = func() error { return nil } }()
	if err := b.Close("killed mid-rewrite"); err == nil {
		t.Fatal("a failed rewrite went unreported")
	}
	after, err := openSpool(spool, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if after.pending < onDisk {
		t.Fatalf("the spool held %d events before the rewrite, %d after it died", onDisk, after.pending)
	}
	events, err := after.peek(after.pending)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(events); i++ {
		if events[i].Seq != events[i-1].Seq+1 {
			t.Fatalf("spool out of order after the failed rewrite: %d then %d", events[i-1].Seq, events[i].Seq)
		}
	}
	if _, err := os.Stat(spool + ".new"); !errors.Is(err, os.ErrNotExist) {
		t.Error("the half-made spool was left behind")
	}
}
