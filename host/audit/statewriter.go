package audit

import (
	"errors"
	"sync"
	"time"
)

// stateWriter makes the log's state durable in the background: the
// sequencer writes each checkpoint's state (and an epoch's end, and a seq
// reservation ahead of need) into a slot under the bus's lock (so a kill
// -9 keeps it) and hands the fdatasync here, so that no emitter holds the
// lock through it and saves close together share one fdatasync (gather).
// A power cut after a sink's fsync of a checkpoint and before this
// fdatasync leaves that sink with a checkpoint past the state on disk: the
// next start rolls forward over the sink's trail to it (rollforward.go).
// That is also why a CRITICAL emit that a sink with a trail on this node
// made durable does not wait for this fdatasync (awaitCritical). What no
// roll forward can reach waits for it, and hurries it: an epoch's end
// (epochgate.go), every checkpoint bound for a sink off the node
// (delivery.go), and a CRITICAL emit that only such sinks hold. It also
// refreshes state_dir/checkpoint, once it is idle.
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
	// urgent is set while someone waits for the next fdatasync (wait,
	// hurry); otherwise it waits up to groupCommit for more saves.
	urgent  bool
	wake    chan struct{}
	hurried chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

// groupCommit is how long the writer gathers saves before one fdatasync
// when nobody waits for it. A CRITICAL emit that an on-node sink made
// durable does not wait for the state (awaitCritical): a power cut before
// the fdatasync is rolled forward over that sink's trail. The wait keeps
// the fdatasync off the disk while a sink's fsync of the next CRITICAL
// record runs: two flushes of one disk at once made that fsync wait for
// both, 70 us of a 300 us one here (bench/RESULTS.md). It also bounds how
// far the state on disk lags behind the on-node trails.
const groupCommit = 10 * time.Millisecond

type stateWaiter struct {
	seq uint64
	ch  chan error
}

func newStateWriter(store *chainStore, log func(msg string, args ...any), failed func(error)) *stateWriter {
	sw := &stateWriter{store: store, log: log, failed: failed, wake: make(chan struct{}, 1), hurried: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
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
	} else {
		// A reservation ahead of need: emits that pass it before it is
		// durable would wait for an fdatasync under the bus's lock.
		sw.urgent = true
	}
	sw.waiters = append(sw.waiters, stateWaiter{seq: seq, ch: ch})
	urgent := sw.urgent
	sw.mu.Unlock()
	signal(sw.wake)
	if urgent {
		signal(sw.hurried)
	}
	return ch
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// hurry asks for the next fdatasync now: someone waits for it.
func (sw *stateWriter) hurry() {
	sw.mu.Lock()
	sw.urgent = true
	sw.mu.Unlock()
	signal(sw.hurried)
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
	sw.urgent = true
	signal(sw.hurried)
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
			sw.gather()
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

// gather waits, unless someone waits for the fdatasync already, up to
// groupCommit for the saves that follow, so that one fdatasync covers them.
func (sw *stateWriter) gather() {
	sw.mu.Lock()
	urgent := sw.urgent
	sw.mu.Unlock()
	if urgent {
		return
	}
	t := time.NewTimer(groupCommit)
	defer t.Stop()
	select {
	case <-t.C:
	case <-sw.hurried:
	case <-sw.stop:
	}
}

// flush fdatasyncs what is pending and answers the emitters waiting on it;
// it returns the checkpoint it made durable, if any.
func (sw *stateWriter) flush() []byte {
	sw.mu.Lock()
	seq, note, pending := sw.latest, sw.note, sw.pending
	sw.pending, sw.note, sw.urgent = false, nil, false
	sw.mu.Unlock()
	select {
	case <-sw.hurried: // answered by this fdatasync
	default:
	}
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
