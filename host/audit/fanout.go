package audit

import (
	"errors"

	"github.com/vramward/vramward/sdk/audit"
)

// The fan-out: a sequencer's step queued for every sink, with the waiter
// of the CRITICAL record in it. It knows nothing of checkpoints but that
// a signed one wakes prepareSigning.

// emitWait says who waits for a step's CRITICAL record, and how.
type emitWait int

const (
	noWaiter       emitWait = iota // nobody: the bus's own steps
	waitQueued                     // its emitter, for the sinks' delivery loops
	waitDelivering                 // its emitter, which delivers to an idle sink itself (direct.go)
)

// fanOut queues a sequencer's step for every sink. For a CRITICAL record
// sealed in it, it returns the waiter its emit waits on (unless noWaiter),
// or the step's reason to fail it now, which every sink counts. b.mu is
// held.
func (b *Bus) fanOut(st step, how emitWait) (*waiter, error) {
	if len(st.offers) > 0 {
		b.witness.dispatch(st.offers)
	}
	r := st.sealed
	critical := r != nil && r.Severity == audit.Critical
	if critical && st.critical != nil {
		for _, s := range b.sinks {
			s.offeredWhileFailing(r, nil, st.critical)
		}
	}
	var w *waiter
	if critical && st.critical == nil && how != noWaiter {
		need := len(b.sinks)
		if b.opts.Require == "any" {
			need = 1
		}
		sev := r.Severity
		w = &waiter{seq: r.Seq, state: st.durable, need: need, total: len(b.sinks), failed: map[string]error{}, settled: make(chan struct{}),
			countFail: func(sink string) { b.opts.SinkMetrics.CountUndelivered(sink, sev, 1) }}
		b.wmu.Lock()
		b.waiters[r.Seq] = w
		b.wmu.Unlock()
	}
	var tried *sinkDelivery
	if how == waitDelivering && w != nil && len(st.records) > 0 {
		tried = b.claim(st.records, w)
	}
	if st.signed {
		if w != nil && w.claimed != nil {
			// The emitter wakes it once its delivery is done: made now,
			// the nonces would take a vCPU from the plugin's wake.
			w.prepareAfter = true
		} else {
			signal(b.prepare)
		}
	}
	if tried != nil && w.claimed == nil {
		tried.q.signal() // after prepareSigning, as the other sinks' loops
	}
	if len(st.records) > 0 {
		b.push(st.records, w, tried)
	}
	return w, st.critical
}

// push queues batch for every sink but done (claim queued it there); w
// waits for the CRITICAL record among them, if any (the checkpoint that
// covers it travels with it). b.mu is held.
func (b *Bus) push(batch []audit.Record, w *waiter, done *sinkDelivery) {
	for _, s := range b.sinks {
		if s != done {
			b.queueFor(s, batch, w, false)
		}
	}
}

// queueFor queues batch for s, claimed for w's emitter when claim is set
// and s is idle (pushClaiming); a sink that cannot take it or is failing
// counts it as failed now. b.mu is held.
func (b *Bus) queueFor(s *sinkDelivery, batch []audit.Record, w *waiter, claim bool) (claimed bool) {
	waiterOf := func(r *audit.Record) *waiter {
		if w != nil && r.Seq == w.seq {
			return w
		}
		if r.Severity != audit.Critical {
			return nil
		}
		// A CRITICAL record the epoch gate held: its emit still waits.
		b.wmu.Lock()
		defer b.wmu.Unlock()
		return b.waiters[r.Seq]
	}
	var err error
	if claim {
		claimed, err = s.q.pushClaiming(batch)
	} else {
		err = s.q.push(batch...)
	}
	if err != nil {
		// A full spool refuses every event until it drains: say so
		// once, not once an event (each is counted).
		if !errors.Is(err, ErrSpoolFull) || !s.spoolFull.Swap(true) {
			b.log.Error("could not queue an audit event for a sink; it is counted as failed", "sink", s.conn.Name(), "seq", batch[0].Seq, "error", err)
		}
		for i := range batch {
			s.offeredWhileFailing(&batch[i], waiterOf(&batch[i]), err)
		}
		return false
	}
	if s.spoolFull.Swap(false) {
		b.log.Info("the sink's spool takes events again", "sink", s.conn.Name())
	}
	// A sink that is down or failing will not take this event in time:
	// it counts as failed now (and, for a CRITICAL one, the emit learns
	// it now rather than at critical_timeout). It stays queued.
	if err := s.failure(); err != nil {
		for i := range batch {
			s.offeredWhileFailing(&batch[i], waiterOf(&batch[i]), err)
		}
	}
	return claimed
}
