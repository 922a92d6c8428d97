package audit

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vramward/vramward/host/trail"
)

// tornSlots emulates the state's disk through a power cut: it keeps what
// each slot file held at its last fdatasync, and cut writes into a new
// directory what a cut now would leave, taking the worst case: a slot
// written since its last fdatasync is torn.
type tornSlots struct {
	mu      sync.Mutex
	durable map[string][]byte // by file name
}

// fdatasyncKeeping fdatasyncs fd and hands keep the slot's name and the
// bytes it held: what a power cut after this fdatasync leaves of it.
func fdatasyncKeeping(fd int, keep func(name string, data []byte)) error {
	name, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		return err
	}
	data, err := os.ReadFile(name)
	if err != nil {
		return err
	}
	if err := unix.Fdatasync(fd); err != nil {
		return err
	}
	keep(filepath.Base(name), data)
	return nil
}

func newTornSlots(t *testing.T, delay time.Duration) *tornSlots {
	ts := &tornSlots{durable: map[string][]byte{}}
	hook := func(fd int) error {
		time.Sleep(delay)
		return fdatasyncKeeping(fd, func(name string, data []byte) {
			ts.mu.Lock()
			ts.durable[name] = data
			ts.mu.Unlock()
		})
	}
	fdatasyncHook.Store(&hook)
	t.Cleanup(func() { fdatasyncHook.Store(nil) })
	return ts
}

// cut returns the state directory a power cut now would leave, and the
// slots it tore.
func (ts *tornSlots) cut(t *testing.T, dir string) (string, []string) {
	t.Helper()
	out := t.TempDir()
	var torn []string
	for _, name := range []string{"chain.state.a", "chain.state.b"} {
		now, err := os.ReadFile(filepath.Join(dir, name))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		ts.mu.Lock()
		kept, synced := ts.durable[name]
		ts.mu.Unlock()
		if !synced {
			continue // never durable: a cut leaves no such file
		}
		if !bytes.Equal(now, kept) {
			torn = append(torn, name)
			kept = bytes.Repeat([]byte{0xa5}, len(kept))
		}
		if err := os.WriteFile(filepath.Join(out, name), kept, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return out, torn
}

// TestAPowerCutNeverTearsBothStateSlots: whatever moment the power goes,
// one slot on disk is whole, so the next start finds a state to continue
// from. Emits run faster than the state's fdatasync (5 ms here), with
// checkpoints and epoch ends close together. Before, a save went to the
// other slot while the last was still waiting for its fdatasync, so a cut
// then tore both and the node refused to start.
func TestAPowerCutNeverTearsBothStateSlots(t *testing.T) {
	dir := t.TempDir()
	ts := newTornSlots(t, 5*time.Millisecond)
	s := &memSink{}
	b := newBus(t, dir, Options{Limits: trail.Limits{EpochEvents: 40, EpochDuration: time.Hour, CheckpointEvents: 3, CheckpointInterval: time.Hour}}, s)
	for i := 0; i < 200; i++ {
		e := info(t, i)
		if i%9 == 8 {
			e = critical(t)
		}
		if err := b.Emit(context.Background(), e); err != nil {
			t.Fatalf("emit %d: %v", i, err)
		}
		// The cut is taken with the store's lock held, so that no save
		// writes between the reads of the two slots: that would show
		// both torn, though never at one instant.
		b.seq.store.mu.Lock()
		cutDir, torn := ts.cut(t, dir)
		b.seq.store.mu.Unlock()
		_, key, ok, err := (&chainStore{dir: cutDir}).load()
		if err != nil || !ok {
			b.Close("done")
			t.Fatalf("a power cut after emit %d tore %v and left no state to continue from (%v)", i, torn, err)
		}
		key.Destroy()
	}
	if err := b.Close("done"); err != nil {
		t.Fatal(err)
	}
}
