package audit

import (
	"errors"
	"sync"
	"time"
)

// stateWriter makes the log's state durable in the background: the
// sequencer writes each checkpoint's state (and an epoch's end, and a seq
// reservation ahead of need) into a slot under the bus's lock (so a kill
// -9 keeps it) and hands the fdatasync here, so that a
// CRITICAL emitter waits for it together with the sinks instead of before
// them, checkpoints close together share one fdatasync, and no emitter
// holds the lock through it. A power cut after a sink's fsync of a
// checkpoint and before this fdatasync leaves that sink with a checkpoint
// past the state on disk: the next start rolls forward over the sink's
// trail to it (rollforward.go). What no roll forward can reach waits for
// this fdatasync: an epoch's end (epochgate.go), and every checkpoint
// bound for a sink off the node (delivery.go). Holding every checkpoint
// for every sink would cost 4.0-4.2x a raw fsync for a CRITICAL emit
// instead of 3.0x (BenchmarkCriticalEmit). It also refreshes
// state_dir/checkpoint, once it is idle.
type stateWriter struct {
	store *chainStore
	log   func(msg string, args ...any)
	// failed hears of a failed fdatasync: the bus holds back what follows
	// until a save succeeds.
	failed func(error)
	mu     sync.Mutex
	// latest is the newest seq submitted, note its checkpoint; durable is
	// the newest seq fdatasync'd.
	latest  uint64
	note    []byte
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

func newStateWriter(store *chainStore, log func(msg string, args ...any), failed func(error)) *stateWriter {
	sw := &stateWriter{store: store, log: log, failed: failed, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go sw.run()
	return sw
}

// persist asks for the state written up to seq to be made durable, and for
// note to become state_dir/checkpoint; the channel answers once it is. The
// caller holds the bus lock, so seqs arrive in order.
func (sw *stateWriter) persist(seq uint64, note []byte) <-chan error {
	ch := make(chan error, 1)
	sw.mu.Lock()
	sw.latest, sw.pending = seq, true
	if note != nil {
		sw.note = note
	}
	sw.waiters = append(sw.waiters, stateWaiter{seq: seq, ch: ch})
	sw.mu.Unlock()
	select {
	case sw.wake <- struct{}{}:
	default:
	}
	return ch
}

// wait answers once the state written up to seq is durable (or with the
// error of the fdatasync that should have made it so), without asking for
// one: persist already has.
func (sw *stateWriter) wait(seq uint64) <-chan error {
	ch := make(chan error, 1)
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.durable >= seq {
		ch <- nil
		return ch
	}
	sw.waiters = append(sw.waiters, stateWaiter{seq: seq, ch: ch})
	return ch
}

// saved records a state the sequencer made durable itself, and answers
// whoever waits for it.
func (sw *stateWriter) saved(seq uint64) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	sw.setDurable(seq)
	kept := sw.waiters[:0]
	for _, w := range sw.waiters {
		if w.seq <= sw.durable {
			w.ch <- nil
		} else {
			kept = append(kept, w)
		}
	}
	sw.waiters = kept
}

// setDurable moves the durable seq; sw.mu is held.
func (sw *stateWriter) setDurable(seq uint64) { sw.durable = max(sw.durable, seq) }

// checkpointFileAfter is how long the writer waits, idle, before it
// refreshes state_dir/checkpoint with the newest durable checkpoint.
const checkpointFileAfter = 50 * time.Millisecond

func (sw *stateWriter) run() {
	defer close(sw.done)
	var unwritten []byte // the newest durable checkpoint not yet in the file
	idle := time.NewTimer(time.Hour)
	idle.Stop()
	for {
		select {
		case <-sw.wake:
			if note := sw.flush(); note != nil {
				unwritten = note
				idle.Reset(checkpointFileAfter)
			}
		case <-idle.C:
			sw.writeCheckpointFile(unwritten)
			unwritten = nil
		case <-sw.stop:
			sw.writeCheckpointFile(unwritten)
			return
		}
	}
}

// writeCheckpointFile refreshes state_dir/checkpoint, a copy for operators
// to take off the node (the slots hold the state). It waits until the
// writer is idle: renaming a new file into place puts its data into the
// journal commit a sink's fsync on the same file system waits for, which
// made back-to-back CRITICAL emits a third slower.
func (sw *stateWriter) writeCheckpointFile(note []byte) {
	if note == nil {
		return
	}
	if err := sw.store.writeCheckpoint(note); err != nil {
		sw.log("could not refresh the checkpoint file", "error", err)
	}
}

// flush fdatasyncs what is pending and answers the emitters waiting on it;
// it returns the checkpoint it made durable, if any.
func (sw *stateWriter) flush() []byte {
	sw.mu.Lock()
	seq, note, pending := sw.latest, sw.note, sw.pending
	sw.pending, sw.note = false, nil
	sw.mu.Unlock()
	if !pending {
		return nil
	}
	err := sw.store.sync()
	if err != nil {
		sw.failed(err)
	}
	sw.mu.Lock()
	if err == nil {
		sw.setDurable(seq)
	}
	kept := sw.waiters[:0]
	for _, w := range sw.waiters {
		switch {
		case err != nil && w.seq <= seq:
			w.ch <- err
		case w.seq <= sw.durable:
			w.ch <- nil
		default:
			kept = append(kept, w)
		}
	}
	sw.waiters = kept
	sw.mu.Unlock()
	if err != nil {
		return nil
	}
	return note
}

// close makes what is pending durable, then stops the writer.
func (sw *stateWriter) close() {
	close(sw.stop)
	<-sw.done
	sw.writeCheckpointFile(sw.flush())
	sw.mu.Lock()
	defer sw.mu.Unlock()
	for _, w := range sw.waiters {
		w.ch <- errStateWriterClosed
	}
	sw.waiters = nil
}

var errStateWriterClosed = errors.New("audit bus closed before the log's state was saved")
