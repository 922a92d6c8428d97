package audit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/vramward/vramward/sdk/audit"
)

// A CRITICAL emit waits for the required sinks to make its record durable,
// and, unless one of them keeps its copy in a trail on this node, for the
// state holding the checkpoint that covers it, until critical_timeout: the
// waiter gathers each sink's outcome as deliveries report it.

// CriticalError is returned by a CRITICAL emit that did not reach the
// required sinks. The caller must fail the operation that caused it.
type CriticalError struct {
	Seq      uint64
	Type     audit.Type
	Require  string
	Durable  []string
	Failures map[string]error
}

func (e *CriticalError) Error() string {
	return fmt.Sprintf("CRITICAL audit event %s (seq %d) not durable on the required sinks (require = %q): durable so far on %v, failed on %v",
		e.Type, e.Seq, e.Require, e.Durable, e.Failures)
}

type waiter struct {
	seq uint64 // the CRITICAL record's
	// state answers when the chain state holding the event is fsync'd.
	state <-chan error
	// countFail counts a failure the bus decided (not one a client's RPC
	// already counted).
	countFail func(sink string)
	sinks     []string
	need      int // sinks that must succeed
	total     int
	mu        sync.Mutex
	ok        []string
	failed    map[string]error
	settled   chan struct{}
	done      bool
	// claimed is the sink the emitter delivers claimedBatch to itself
	// (direct.go), set under the bus's lock before the emitter reads it.
	claimed      *sinkDelivery
	claimedBatch []audit.Record
	// prepareAfter says the emitter wakes prepareSigning after its
	// delivery: the step's checkpoint used the prepared nonces.
	prepareAfter bool
}

// report records one sink's outcome. counted says whether the failure was
// already counted (by the client whose RPC failed); otherwise the waiter
// counts it, once per sink.
func (w *waiter) report(sink string, err error, counted bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return
	}
	if contains(w.ok, sink) {
		return // this sink already made it durable
	}
	if err == nil {
		w.ok = append(w.ok, sink)
	} else if _, seen := w.failed[sink]; !seen {
		w.failed[sink] = err
		if !counted {
			w.countFail(sink)
		}
	}
	if len(w.ok) >= w.need || w.total-len(w.failed) < w.need {
		w.done = true
		close(w.settled)
	}
}

// awaitCritical waits for w until deadline, critical_timeout after the
// emit began.
func (b *Bus) awaitCritical(ctx context.Context, e audit.Event, w *waiter, deadline time.Time) error {
	defer func() {
		b.wmu.Lock()
		delete(b.waiters, e.Seq)
		b.wmu.Unlock()
	}()
	// One deadline for both waits: a timer fires once, so a second select
	// on it would wait for ever once the first had taken its tick.
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	gaveUp := func() error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("timed out after %s", b.opts.CriticalTimeout)
	}
	var cause error
	select {
	case <-w.settled:
	case <-wctx.Done():
		cause = gaveUp()
	}
	var stateErr error
	select {
	case stateErr = <-w.state: // durable already: taken even past the deadline
	default:
		if cause == nil && b.keptOnNode(w) {
			// A trail on this node holds the record and the checkpoint
			// that covers it, fsync'd: a power cut before the state's
			// fdatasync is rolled forward over that trail (rollforward.go).
			break
		}
		b.seq.state.hurry()
		select {
		case stateErr = <-w.state:
		case <-wctx.Done():
			stateErr = fmt.Errorf("the log's state not fsync'd: %w", gaveUp())
		}
	}
	if stateErr != nil {
		return fmt.Errorf("CRITICAL audit event %s (seq %d): persist the log's state with its checkpoint: %w", e.Type, e.Seq, stateErr)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.ok) >= w.need {
		return nil
	}
	ce := &CriticalError{Seq: e.Seq, Type: e.Type, Require: b.opts.Require, Durable: append([]string(nil), w.ok...), Failures: map[string]error{}}
	for k, v := range w.failed {
		ce.Failures[k] = v
	}
	if cause != nil {
		for _, s := range b.sinks {
			n := s.conn.Name()
			if _, ok := ce.Failures[n]; !ok && !contains(w.ok, n) {
				ce.Failures[n] = cause
				w.countFail(n) // the deadline passed: the host gave up on it
			}
		}
	}
	return ce
}

// keptOnNode says whether a sink that made w's record durable keeps its
// copy in a trail on this node, which a start after a power cut rolls
// the log forward over.
func (b *Bus) keptOnNode(w *waiter) bool {
	w.mu.Lock()
	ok := append([]string(nil), w.ok...)
	w.mu.Unlock()
	for _, s := range b.sinks {
		if contains(ok, s.conn.Name()) && s.conn.OnNode() {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// settle reports a sink's delivery result for the CRITICAL events among
// events. counted says whether a failure was already counted.
func (b *Bus) settle(sink string, events []audit.Record, err error, counted bool) {
	b.wmu.Lock()
	var ws []*waiter
	for i := range events {
		if events[i].Severity == audit.Critical {
			if w, ok := b.waiters[events[i].Seq]; ok {
				ws = append(ws, w)
			}
		}
	}
	b.wmu.Unlock()
	for _, w := range ws {
		w.report(sink, err, counted)
	}
}

// failPending tells every CRITICAL emit still waiting that sink failed:
// whatever it holds queued will not be durable in time.
func (b *Bus) failPending(sink string, err error) {
	b.wmu.Lock()
	ws := make([]*waiter, 0, len(b.waiters))
	for _, w := range b.waiters {
		ws = append(ws, w)
	}
	b.wmu.Unlock()
	for _, w := range ws {
		w.report(sink, err, false)
	}
}
