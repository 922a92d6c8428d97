package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vramward/vramward/host/trail"
	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audit/chain"
)

// hangStateDisk makes every fdatasync of the state block until the test
// ends, from the moment hang is called; the slots' bytes at the last
// fdatasync that returned are what a power cut leaves.
func hangStateDisk(t *testing.T) (hang func(), durable func() map[string][]byte) {
	t.Helper()
	var (
		mu    sync.Mutex
		hung  bool
		kept  = map[string][]byte{}
		freed = make(chan struct{})
	)
	sync := func(fd int) error {
		mu.Lock()
		h := hung
		mu.Unlock()
		if h {
			<-freed
			return errors.New("the disk is gone")
		}
		return fdatasyncKeeping(fd, func(name string, data []byte) {
			mu.Lock()
			kept[name] = data
			mu.Unlock()
		})
	}
	fdatasyncHook.Store(&sync)
	t.Cleanup(func() {
		close(freed)
		fdatasyncHook.Store(nil)
	})
	return func() {
			mu.Lock()
			hung = true
			mu.Unlock()
		}, func() map[string][]byte {
			mu.Lock()
			defer mu.Unlock()
			out := map[string][]byte{}
			for k, v := range kept {
				out[k] = v
			}
			return out
		}
}

// TestACriticalEmitKeptOnTheNodeOutlivesAPowerCutWithoutTheStatesFsync:
// with the state's disk hung, a CRITICAL emit that a sink keeping its copy
// in a trail on this node made durable returns at once, not at
// critical_timeout: it does not wait for the state's fdatasync. A power cut
// then (the slots put back to what the last fdatasync made durable, far
// behind) loses nothing of it: the start rolls forward over the trail, and
// verify finds the record covered by a signed checkpoint, the crash's
// declared loss beginning after it. A sink whose copy is off the node
// gives no such cover: there the emit still waits for the state, and on
// the hung disk fails at critical_timeout.
func TestACriticalEmitKeptOnTheNodeOutlivesAPowerCutWithoutTheStatesFsync(t *testing.T) {
	t.Run("on the node", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(t.TempDir(), "trail.log")
		hang, durable := hangStateDisk(t)
		c := openCopy(t, path)
		b, _, _ := newBusWithSink(t, dir, Options{CriticalTimeout: 5 * time.Second}, c)
		for i := 0; i < 3; i++ {
			if err := b.Emit(context.Background(), info(t, i)); err != nil {
				t.Fatal(err)
			}
		}
		hang()
		t0 := time.Now()
		if err := b.Emit(context.Background(), critical(t)); err != nil {
			t.Fatalf("a CRITICAL emit the trail holds failed on the hung state disk: %v", err)
		}
		if d := time.Since(t0); d > time.Second {
			t.Fatalf("the CRITICAL emit took %s: it waited for the state's disk", d)
		}
		crit := b.Trail().Seq - 1 // its checkpoint follows it
		if err := b.Emit(context.Background(), info(t, 9)); err != nil {
			t.Fatal(err)
		}
		last := b.Trail().Seq
		eventually(t, "the last record on the sink", func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			_, ok := c.have[last]
			return ok
		})
		// The cut: the bus stops unclosed, and the slots hold what the
		// disk made durable before it hung.
		crash(b)
		for name, data := range durable() {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		fdatasyncHook.Store(nil)
		b2, _, _ := newBusWithSink(t, dir, Options{SinkTrails: func() []string { return []string{path} }}, openCopy(t, path))
		if !b2.Recovered {
			t.Fatal("not recovered")
		}
		if err := b2.Close("after the cut"); err != nil {
			t.Fatal(err)
		}
		key, _, err := trail.ReadVerifierKey(filepath.Join(dir, PublicKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		rep, err := trail.VerifyFiles(trail.Options{Key: key}, path)
		var ve *chain.Error
		if !errors.As(err, &ve) || ve.Problem != trail.Lost || len(rep.Lost) != 1 {
			t.Fatalf("want the crash's declared loss alone: %v", err)
		}
		if from := rep.Lost[0].From; from <= crit {
			t.Fatalf("the declared loss starts at seq %d: the CRITICAL record (seq %d) is not kept", from, crit)
		}
		if _, err := trail.VerifyFiles(trail.Options{Key: key, AcceptLoss: []trail.SeqRange{rep.Lost[0].SeqRange}}, path); err != nil {
			t.Fatalf("verify: %v", err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), fmt.Sprintf(`{"seq":%d,`, crit)) || !strings.Contains(string(data), "IntegrityViolation") {
			t.Fatalf("the trail lacks the CRITICAL record, seq %d", crit)
		}
	})
	t.Run("off the node", func(t *testing.T) {
		hang, _ := hangStateDisk(t)
		off := &checkpointWatch{off: true, durable: &atomic.Uint64{}, ahead: func(*audit.Record, uint64) (bool, bool) { return false, false }}
		b, _, _ := newBusWithSink(t, t.TempDir(), Options{CriticalTimeout: 300 * time.Millisecond}, off)
		hang()
		t0 := time.Now()
		err := b.Emit(context.Background(), critical(t))
		if err == nil || !strings.Contains(err.Error(), "state not fsync'd") {
			t.Fatalf("a CRITICAL emit only an off-node copy holds passed a hung state disk: %v", err)
		}
		if d := time.Since(t0); d > 2*time.Second {
			t.Fatalf("it failed after %s, not at critical_timeout", d)
		}
		crash(b) // a Close would wait on the hung disk
	})
}

// TestOneStateFsyncCoversManyCriticalEmits: back-to-back CRITICAL emits
// that an on-node sink makes durable share the state's fdatasyncs (group
// commit) rather than issue one each on the disk the sink's fsync uses.
func TestOneStateFsyncCoversManyCriticalEmits(t *testing.T) {
	var syncs atomic.Int32
	count := func(fd int) error {
		syncs.Add(1)
		return unix.Fdatasync(fd)
	}
	b := newBus(t, t.TempDir(), Options{}, &memSink{})
	fdatasyncHook.Store(&count)
	t.Cleanup(func() { fdatasyncHook.Store(nil) })
	const n = 50
	for i := 0; i < n; i++ {
		if err := b.Emit(context.Background(), critical(t)); err != nil {
			t.Fatal(err)
		}
	}
	if got := syncs.Load(); got > n/2 {
		t.Fatalf("%d CRITICAL emits made %d state fdatasyncs: no group commit", n, got)
	}
	if err := b.Close("done"); err != nil {
		t.Fatal(err)
	}
}
