package audit

import (
	"errors"
	"sync"

	"github.com/vramward/vramward/sdk/audit/chain"
)

// stateWriter makes the chain state durable in the background for CRITICAL
// events: the emitter waits for it together with the sinks instead of
// before them, and CRITICAL events close together share one fsync.
type stateWriter struct {
	store *chainStore
	mu    sync.Mutex
	// latest is the newest state submitted; durable the seq of the newest
	// state fsync'd.
	latest  chain.State
	pending bool
	durable uint64
	waiters []stateWaiter
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

type stateWaiter struct {
	seq uint64
	ch  chan error
}

func newStateWriter(store *chainStore) *stateWriter {
	sw := &stateWriter{store: store, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go sw.run()
	return sw
}

// persist asks for st to be made durable; the channel answers once a state
// at least as new is fsync'd. The caller holds the bus lock, so states
// arrive in seq order.
func (sw *stateWriter) persist(st chain.State) <-chan error {
	ch := make(chan error, 1)
	sw.mu.Lock()
	sw.latest, sw.pending = st, true
	sw.waiters = append(sw.waiters, stateWaiter{seq: st.Seq, ch: ch})
	sw.mu.Unlock()
	select {
	case sw.wake <- struct{}{}:
	default:
	}
	return ch
}

// saved records a state the bus wrote itself (synchronously).
func (sw *stateWriter) saved(seq uint64) {
	sw.mu.Lock()
	sw.durable = max(sw.durable, seq)
	sw.mu.Unlock()
}

func (sw *stateWriter) run() {
	defer close(sw.done)
	for {
		select {
		case <-sw.wake:
		case <-sw.stop:
			return
		}
		sw.mu.Lock()
		st, pending := sw.latest, sw.pending
		sw.pending = false
		sw.mu.Unlock()
		if !pending {
			continue
		}
		err := sw.store.save(st, false, true)
		sw.mu.Lock()
		if err == nil {
			sw.durable = max(sw.durable, st.Seq)
		}
		kept := sw.waiters[:0]
		for _, w := range sw.waiters {
			switch {
			case err != nil && w.seq <= st.Seq:
				w.ch <- err
			case w.seq <= sw.durable:
				w.ch <- nil
			default:
				kept = append(kept, w)
			}
		}
		sw.waiters = kept
		sw.mu.Unlock()
	}
}

// close stops the writer after the last pending save.
func (sw *stateWriter) close() {
	close(sw.stop)
	<-sw.done
	sw.mu.Lock()
	defer sw.mu.Unlock()
	for _, w := range sw.waiters {
		w.ch <- errStateWriterClosed
	}
	sw.waiters = nil
}

var errStateWriterClosed = errors.New("audit bus closed before the chain state was saved")
