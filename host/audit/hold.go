package audit

import (
	"errors"
	"fmt"
	"time"

	"github.com/vramward/vramward/sdk/audit"
)

// The log's state is the seq authority: a restart resumes past the seqs the
// state on disk reserves, from the checkpoint it holds. So no record leaves
// the bus for a sink before the state that covers it is written: while a
// write fails, sealed records are held here, in order, and released once a
// save succeeds. A kill -9 meanwhile loses only records no sink ever saw,
// whose seqs the next run may then reuse without forking any copy.

// stateRetryEvery spaces the attempts to write a failing state that
// ordinary events make; a CRITICAL emit always tries.
const stateRetryEvery = 100 * time.Millisecond

// ErrStateUnwritten is an emit refused before it was sealed: the log's state
// could not be written and the records held back already fill a queue.
var ErrStateUnwritten = errors.New("the log's state cannot be written")

// stateFailed records a failed write of the log's state.
func (b *Bus) stateFailed(err error) {
	b.healthMu.Lock()
	first := b.stateErr == nil
	b.stateErr = err
	if first {
		b.stateSince = time.Now()
	}
	b.healthMu.Unlock()
	b.m.stateFailures.Inc()
	b.m.stateDegraded.Set(1)
	if first {
		b.log.Error("the log's state cannot be written: records are held back from every sink and CRITICAL emits fail until it is", "error", err)
	}
}

// stateWritten records a successful synchronous save.
func (b *Bus) stateWritten() {
	b.healthMu.Lock()
	was, since := b.stateErr, b.stateSince
	b.stateErr = nil
	b.healthMu.Unlock()
	if was != nil {
		b.m.stateDegraded.Set(0)
		b.log.Info("the log's state is written again; held records go to the sinks", "failing_for", time.Since(since).Round(time.Millisecond).String())
	}
}

// StateHealth reports when the current failure to write the log's state
// began and its last error; a nil error while the state is written.
func (b *Bus) StateHealth() (since time.Time, err error) {
	b.healthMu.Lock()
	defer b.healthMu.Unlock()
	return b.stateSince, b.stateErr
}

func (b *Bus) stateFailing() error {
	_, err := b.StateHealth()
	return err
}

// writeState saves the log's state before the records up to last leave:
// fdatasync'd when they pass the reservation or when an epoch ended (its
// key must leave both slots before the next one signs); otherwise written
// now and fdatasync'd by the state writer, whose channel answers then.
// While the state fails, it fails at once (see queueSealed). b.mu is held.
func (b *Bus) writeState(last uint64, note []byte, endEpoch bool) (<-chan error, error) {
	if failing := b.stateFailing(); failing != nil {
		return nil, failing // queueSealed tried it again just before
	}
	sync := endEpoch && note != nil || b.store.needsReservation(last)
	if !sync && note == nil {
		return nil, nil
	}
	b.stateTried = time.Now()
	if err := b.store.save(b.tlog, false, sync); err != nil {
		b.stateFailed(err)
		return nil, err
	}
	if sync {
		b.state.saved(last)
		b.stateWritten()
	}
	if note == nil {
		return nil, nil
	}
	return b.state.persist(last, note), nil
}

// retryState writes a failing state again and, once it is written, sends
// what was held. b.mu is held.
func (b *Bus) retryState() error {
	err := b.stateFailing()
	if err == nil && len(b.held) == 0 {
		return nil
	}
	b.stateTried = time.Now()
	if err := b.store.save(b.tlog, false, true); err != nil {
		b.stateFailed(err)
		return err
	}
	b.state.saved(b.tlog.Seq())
	b.stateWritten()
	held := b.held
	b.held = nil
	b.push(held, nil)
	return nil
}

// refuseUnsealed is an emit refused before sealing while the state cannot
// be written and the held records fill a queue: every sink misses it, and
// each counts it. b.mu is held.
func (b *Bus) refuseUnsealed(e *audit.Event) error {
	err := fmt.Errorf("%w (%d records held back): %s %s not recorded: %v", ErrStateUnwritten, len(b.held), e.Severity, e.Type, b.stateFailing())
	for _, s := range b.sinks {
		b.opts.SinkMetrics.CountUndelivered(s.conn.Name(), e.Severity, 1)
	}
	return err
}

// dropHeld counts, at shutdown, the records that never left because the
// state could not be written: every sink misses them. b.mu is held.
func (b *Bus) dropHeld() error {
	if len(b.held) == 0 {
		return nil
	}
	for _, s := range b.sinks {
		for i := range b.held {
			s.offeredWhileFailing(&b.held[i], nil, ErrStateUnwritten)
		}
	}
	err := fmt.Errorf("%d records (seq %d to %d) never left the host: %w: %v", len(b.held), b.held[0].Seq, b.held[len(b.held)-1].Seq, ErrStateUnwritten, b.stateFailing())
	b.held = nil
	return err
}
