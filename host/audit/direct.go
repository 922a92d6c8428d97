package audit

import (
	"context"
	"errors"
	"time"

	"github.com/vramward/vramward/sdk/audit"
)

// A CRITICAL emit whose sink is idle delivers its own batch (the record
// and the checkpoint covering it) instead of waking the sink's delivery
// loop and sleeping until that loop reports back: on a 2-vCPU node those
// two goroutine hand-offs were a sixth of the emit (bench/RESULTS.md).
// It claims the batch as it queues it, under the bus's lock, only when the
// batch is all the sink's queue holds, nothing is in flight to the sink,
// and the sink runs and is not failing; so the sink still gets its records
// in order, one batch at a time. It tries once: whatever it does not
// deliver goes back to the delivery loop, which retries, restarts and
// counts as it does for any batch. Only a sink with its copy on this node
// is delivered to this way (an off-node sink first waits for the state,
// awaitStateCovers), and only by Emit, whose caller waits anyway.

// mayClaim says whether a CRITICAL emit may deliver to w itself. b.mu is
// held: the conn is not asked (its lock is taken before the bus's).
func (w *sinkDelivery) mayClaim() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.client != nil && w.onNode && !w.failing
}

// deliverClaimed sends a batch claimed by a CRITICAL emit, once, by the
// emit's deadline and while ctx lasts. A failure fails the emit as the
// loop's first failed try would (its emitter hears of it now, the client
// has counted it), and the batch goes back to the loop, which tries again
// at once and does the rest: counting, AuditSinkFailed, backoff, restart.
// The deadline is what makes the emit return at critical_timeout; a sink
// slower than that may still store the batch and then get it again from
// the loop, a re-send it skips as it does after any failed delivery (the
// file sink by seq and hash).
func (w *sinkDelivery) deliverClaimed(ctx context.Context, batch []audit.Record, deadline time.Time) {
	err := w.sendBy(ctx, batch, deadline)
	if err == nil {
		w.delivered(batch)
		w.byEmitters.Add(1)
		return
	}
	var se *audit.Error
	if errors.As(err, &se) && se.Written > 0 {
		n := min(se.Written, len(batch))
		w.delivered(batch[:n]) // the loop delivers the rest (commit wakes it)
		if batch = batch[n:]; len(batch) == 0 {
			return
		}
	}
	w.b.settle(w.conn.Name(), batch, err, err != errNotRunning)
	w.q.release()
}

// claim queues batch for the first sink that w's emitter may deliver to
// itself (direct.go), claiming it when that sink is idle, and returns the
// sink; its loop is not woken (fanOut does, unless claimed). b.mu is held.
func (b *Bus) claim(batch []audit.Record, w *waiter) *sinkDelivery {
	for _, s := range b.sinks {
		if s.mayClaim() {
			if b.queueFor(s, batch, w, true) {
				w.claimed, w.claimedBatch = s, batch
			}
			return s
		}
	}
	return nil
}
