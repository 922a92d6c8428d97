package audit

import (
	"sync"
	"time"

	"github.com/vramward/vramward/sdk/audit"
)

// queue holds one sink's undelivered events in order: in memory up to its
// capacity, then in a spool file in the state dir, so a slow or dead sink
// neither blocks the others nor loses anything. Once events overflow to the
// spool, every later event goes there too until it is drained, which keeps
// the order.
type queue struct {
	mu       sync.Mutex
	wake     chan struct{} // signalled on push and close
	mem      []audit.Record
	cap      int
	spool    *spool
	spooling bool
	closed   bool
	// urgent is set by a CRITICAL event: its emitter is waiting, so the next
	// delivery does not wait for the batch to fill.
	urgent bool
	// inFlight is set while a batch taken from the front is being
	// delivered, by the sink's delivery loop (next) or by the CRITICAL
	// emitter that claimed it (pushClaiming): next hands out nothing
	// meanwhile, so that one sink never gets two batches at once or one
	// twice. commit or release ends it.
	inFlight bool
	onDepth  func(int)
}

func newQueue(capacity int, sp *spool, onDepth func(int)) *queue {
	q := &queue{wake: make(chan struct{}, 1), cap: capacity, spool: sp, onDepth: onDepth}
	q.spooling = sp.pending > 0 // events left by the last run come first
	q.report()
	return q
}

// depth counts the events waiting; q.mu is held.
func (q *queue) depth() int { return len(q.mem) + q.spool.pending }

// size is depth for callers that do not hold q.mu.
func (q *queue) size() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.depth()
}

func (q *queue) report() {
	if q.onDepth != nil {
		q.onDepth(q.depth())
	}
}

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// push appends events, together: a CRITICAL event and the checkpoint
// that covers it go to the same place (memory or spool) and, by peek, into
// the same batch. It only fails when the spool cannot be written.
func (q *queue) push(events ...audit.Record) error {
	_, err := q.add(false, events)
	return err
}

// pushClaiming pushes events and, when they are all the queue holds and
// nothing is in flight, claims them for the caller to deliver itself
// (direct.go), which must then commit or release them. Either way it does
// not wake the delivery loop: unless it claimed them, the caller does
// (signal), once it has woken what should run first.
func (q *queue) pushClaiming(events []audit.Record) (claimed bool, err error) {
	return q.add(true, events)
}

func (q *queue) add(claim bool, events []audit.Record) (bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	critical := false
	for i := range events {
		critical = critical || events[i].Severity == audit.Critical
	}
	if q.spooling || len(q.mem)+len(events) > q.cap {
		// The older events in memory go to the spool first: a kill -9
		// must not lose them while the newer ones it spools survive,
		// which would cut a hole a checkpoint covers into this sink's copy.
		if len(q.mem) > 0 {
			if err := q.spool.prepend(q.mem); err != nil {
				return false, err
			}
			q.mem = nil
		}
		if err := q.spool.append(events, critical); err != nil {
			return false, err
		}
		q.spooling = true
	} else {
		q.mem = append(q.mem, events...)
	}
	q.report()
	if claim && !q.spooling && !q.inFlight && !q.closed && len(q.mem) == len(events) {
		q.inFlight = true
		return true, nil
	}
	if critical {
		q.urgent = true
	}
	if !claim {
		q.signal()
	}
	return false, nil
}

// release hands a claimed batch back to the delivery loop, which delivers
// it at once.
func (q *queue) release() {
	q.mu.Lock()
	q.inFlight, q.urgent = false, true
	q.mu.Unlock()
	q.signal()
}

// next returns up to max events from the front without removing them,
// waiting up to wait for a batch to fill. It returns nil once the queue is
// closed and empty, or when stop is closed.
func (q *queue) next(max int, wait time.Duration, stop <-chan struct{}) ([]audit.Record, error) {
	var deadline <-chan time.Time
	for {
		q.mu.Lock()
		n, inFlight := q.depth(), q.inFlight
		closed, urgent := q.closed, q.urgent
		if !inFlight {
			q.urgent = false
		}
		q.mu.Unlock()
		switch {
		case inFlight:
			// An emitter delivers the front: wait for its commit or
			// release (both wake this loop).
		case n >= max || (n > 0 && (closed || urgent || wait <= 0)):
			return q.peek(max)
		case n == 0 && closed:
			return nil, nil
		case n > 0 && deadline == nil:
			t := time.NewTimer(wait)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case <-q.wake:
		case <-deadline:
			if !q.isInFlight() {
				return q.peek(max)
			}
			deadline = nil
		case <-stop:
			return nil, nil
		}
	}
}

// peek returns up to max events from the front (one more when the max-th
// is CRITICAL, so that the checkpoint pushed with it shares its batch and
// is made durable with it).
func (q *queue) peek(max int) ([]audit.Record, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.mem) > 0 {
		n := min(max, len(q.mem))
		if n < len(q.mem) && q.mem[n-1].Severity == audit.Critical {
			n++
		}
		q.inFlight = true
		return append([]audit.Record(nil), q.mem[:n]...), nil
	}
	events, err := q.spool.peek(max)
	if err == nil && len(events) == max && events[max-1].Severity == audit.Critical {
		events, err = q.spool.peek(max + 1)
	}
	if err == nil && len(events) > 0 {
		q.inFlight = true
	}
	return events, err
}

func (q *queue) isInFlight() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.inFlight
}

// commit removes the n events next returned, after their delivery.
func (q *queue) commit(n int) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	defer q.report()
	if q.inFlight {
		// The delivery loop is woken only when it has something to do:
		// what was pushed behind a claimed batch, or a close to see.
		q.inFlight = false
		if q.depth() > n || q.closed {
			defer q.signal()
		}
	}
	if len(q.mem) > 0 {
		q.mem = append(q.mem[:0], q.mem[n:]...)
		return nil
	}
	if err := q.spool.consume(n); err != nil {
		return err
	}
	if q.spool.pending == 0 {
		q.spooling = false
	}
	return nil
}

// close makes next return nil once the queue is empty.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

// spill moves what is left in memory to the front of the spool, for the
// next start to deliver first (or, for a sink that failed, so that its
// backlog survives a crash of the host), and sends what comes next to the
// spool too until it is drained.
func (q *queue) spill() (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := q.depth()
	if len(q.mem) > 0 {
		if err := q.spool.prepend(q.mem); err != nil {
			return n, err
		}
		q.mem = nil
	}
	q.spooling = true
	q.report()
	return n, nil
}

// spoolBytes is the size of the spool file.
func (q *queue) spoolBytes() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.spool.size
}
