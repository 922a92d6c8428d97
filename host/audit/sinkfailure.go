package audit

import (
	"strings"
	"time"

	"github.com/vramward/vramward/sdk/audit"
)

// How a sink's failures are counted and recorded: each event once as
// failed for that sink, and the failure itself in the trail.

// offeredWhileFailing counts e as failed for this sink (it was offered while
// the sink is down or failing, or could not be queued) and tells its
// CRITICAL waiter, if any. The bus's lock is held.
func (w *sinkDelivery) offeredWhileFailing(e *audit.Record, wt *waiter, err error) {
	w.mu.Lock()
	w.countedTo = max(w.countedTo, e.Seq)
	w.mu.Unlock()
	if wt != nil {
		wt.report(w.conn.Name(), err, false)
	} else {
		w.b.opts.SinkMetrics.CountUndelivered(w.conn.Name(), e.Severity, 1)
	}
}

// countUndelivered counts the events of batch not counted yet as failed,
// for a failure the host decided (no plugin running, shutdown deadline).
func (w *sinkDelivery) countUndelivered(batch []audit.Record) {
	w.mu.Lock()
	from := w.countedTo
	for i := range batch {
		w.countedTo = max(w.countedTo, batch[i].Seq)
	}
	w.mu.Unlock()
	var per [audit.Critical + 1]int
	for i := range batch {
		if batch[i].Seq > from && batch[i].Severity.Valid() {
			per[batch[i].Severity]++
		}
	}
	for _, sev := range audit.Severities() {
		w.b.opts.SinkMetrics.CountUndelivered(w.conn.Name(), sev, per[sev])
	}
}

// markCounted notes that a client counted the failure of batch.
func (w *sinkDelivery) markCounted(batch []audit.Record) {
	w.mu.Lock()
	for i := range batch {
		w.countedTo = max(w.countedTo, batch[i].Seq)
	}
	w.mu.Unlock()
}

// maxFailureReasons caps the AuditSinkFailed events of one failure, so a
// sink whose error text keeps changing cannot flood the trail.
const maxFailureReasons = 10

// markFailing records that the sink stopped taking events: the first time,
// every CRITICAL emit waiting on it learns it at once and AuditSinkFailed is
// recorded (on the other sinks, and on this one once it is back); while it
// fails, a failure for another reason is recorded too.
func (w *sinkDelivery) markFailing(err error) {
	name := w.conn.Name()
	w.mu.Lock()
	first := !w.failing
	news := !first && w.lastErr != nil && !sameFailure(err, w.lastErr) && w.reasons < maxFailureReasons
	w.failing, w.lastErr = true, err
	if first {
		w.reasons = 1
		w.failingSince = time.Now()
	} else if news {
		w.reasons++
	}
	w.mu.Unlock()
	if !first && !news {
		return
	}
	if first {
		w.b.failPending(name, err)
		// What waits for a failed sink may wait long: on disk, a kill -9
		// of the host does not lose it (memory would), and the log's
		// checkpoints stay true of this sink's copy.
		if _, serr := w.q.spill(); serr != nil {
			w.b.log.Error("could not move a failed sink's queue to its spool", "sink", name, "error", serr)
		}
	}
	w.b.log.Error("audit sink failed; holding its events", "sink", name, "error", err)
	w.b.emitInternal(audit.AuditSinkFailedFields{Sink: name, Reason: err.Error(), Undelivered: uint64(w.q.size())})
}

// sameFailure compares two failures' texts without their numbers: "3
// messages held" and "5 messages held" are one failure going on.
func sameFailure(a, b error) bool {
	strip := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return -1
			}
			return r
		}, s)
	}
	return strip(a.Error()) == strip(b.Error())
}
