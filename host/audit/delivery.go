package audit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vramward/vramward/host/pluginhost"
	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audit/sinkclient"
)

// BatchesPerDelivery is how many batches of batch_size one delivery hands
// the sink's client, which keeps a few of them in flight on one stream. A
// delivery's start and end leave one side idle (the host framing the first
// batch, the plugin writing the last); sixteen batches a delivery make that
// small: through the file sink, 0.35 of the in-process rate against 0.25-0.30
// with four (go run ./bench/audit, same run).
const BatchesPerDelivery = 16

// rpcTimeout bounds one delivery RPC, so a hung plugin is noticed and
// restarted instead of holding its queue forever.
const rpcTimeout = 30 * time.Second

// sinkDelivery delivers one sink's queue in order, one batch at a time; a
// batch leaves the queue only when the sink acknowledged it.
type sinkDelivery struct {
	b    *Bus
	conn SinkConn
	q    *queue

	mu      sync.Mutex
	client  *sinkclient.Client
	onNode  bool // the running plugin's copy is on this node (setClient)
	failing bool
	lastErr error
	// failingSince is when the current failure began.
	failingSince time.Time
	// reasons counts the AuditSinkFailed events of the current failure.
	reasons int
	// countedTo is the highest seq already counted as failed for this sink
	// by the bus, so that what it spools at shutdown is not counted twice.
	countedTo uint64
	// acked is the highest seq the sink acknowledged.
	acked uint64

	// spoolFull is set while the spool refuses events (spool_max_bytes).
	spoolFull atomic.Bool
	// byEmitters counts the batches CRITICAL emitters delivered themselves
	// (direct.go).
	byEmitters atomic.Uint64

	// restarts spaces restarts of the plugin and retries of a delivery.
	restarts *pluginhost.Restarts
	stop     chan struct{} // closed at the shutdown deadline
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{}
	started  bool
}

func newSinkDelivery(b *Bus, conn SinkConn, q *queue) *sinkDelivery {
	ctx, cancel := context.WithCancel(context.Background())
	return &sinkDelivery{b: b, conn: conn, q: q, stop: make(chan struct{}), ctx: ctx, cancel: cancel, done: make(chan struct{}),
		restarts: pluginhost.NewRestarts(b.opts.RestartMin, b.opts.RestartMax)}
}

func (w *sinkDelivery) connect(ctx context.Context) error {
	client, err := w.conn.Start(ctx)
	w.setClient(client)
	return err
}

// setClient keeps the client of a plugin just started, and whether its
// copy is on the node: asked here, where the conn's lock may be taken,
// and read under the bus's, where it may not (mayClaim).
func (w *sinkDelivery) setClient(client *sinkclient.Client) {
	onNode := client != nil && w.conn.OnNode()
	w.mu.Lock()
	w.client, w.onNode = client, onNode
	w.mu.Unlock()
}

func (w *sinkDelivery) current() *sinkclient.Client {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.client
}

// failure returns the error a failing sink last reported, nil when healthy.
func (w *sinkDelivery) failure() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failing {
		return fmt.Errorf("sink is failing: %w", w.lastErr)
	}
	return nil
}

func (w *sinkDelivery) isUp() bool {
	w.mu.Lock()
	failing := w.failing
	w.mu.Unlock()
	return !failing && w.running()
}

// running reports whether the sink's plugin runs (it may be failing).
func (w *sinkDelivery) running() bool {
	w.mu.Lock()
	started := w.client != nil
	w.mu.Unlock()
	if !started {
		return false
	}
	// Not under w.mu: the conn's lock is taken before the bus's elsewhere.
	_, crashed := w.conn.Crash()
	return !crashed
}

// launch starts run in its own goroutine.
func (w *sinkDelivery) launch() {
	w.mu.Lock()
	w.started = true
	w.mu.Unlock()
	go w.run()
}

func (w *sinkDelivery) run() {
	defer close(w.done)
	for {
		// Up to BatchesPerDelivery batches at a time: the sink's client
		// sends them on one stream, the plugin writing one while the next
		// travels.
		batch, err := w.q.next(w.b.opts.BatchSize*BatchesPerDelivery, w.b.opts.BatchWait, w.stop)
		if err != nil {
			// Nothing after the unreadable part can be delivered: the sink
			// is failing, in health and status, until the spool reads.
			w.markFailing(fmt.Errorf("cannot read the sink's spool: %w", err))
			if !w.sleep(time.Second) {
				return
			}
			continue
		}
		if batch == nil {
			return
		}
		if !w.conn.OnNode() && !w.awaitStateCovers(batch) {
			return
		}
		if !w.deliver(batch) {
			return
		}
	}
}

// awaitStateCovers waits, for a sink whose copy is off the node, until the
// state holding the batch's last checkpoint is durable. Otherwise a power
// cut could leave that copy with a checkpoint that neither the state on
// disk nor any trail on the node holds, which the next start could not
// continue from (rollforward.go). A checkpoint of an earlier run (from
// the spool) was saved by it. It reports false when the loop was stopped
// first.
func (w *sinkDelivery) awaitStateCovers(batch []audit.Record) bool {
	var seq uint64
	for i := len(batch) - 1; i >= 0 && seq == 0; i-- {
		if batch[i].Type == audit.AuditCheckpoint {
			seq = batch[i].Seq
		}
	}
	if seq < w.b.seq.firstSeq {
		return true
	}
	for {
		select {
		case err := <-w.b.seq.durable(seq):
			if err == nil {
				return true
			}
			// An fdatasync failed: the sequencer holds what follows and
			// retries; wait for the save that succeeds.
			if !w.sleep(stateRetryEvery) {
				return false
			}
		case <-w.stop:
			return false
		}
	}
}

// sleep waits d unless the loop is stopped; it reports whether to go on.
func (w *sinkDelivery) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-w.stop:
		return false
	}
}

// deliver sends batch until the sink takes it. It returns false when the
// loop was stopped first (the batch stays queued and is spooled).
func (w *sinkDelivery) deliver(batch []audit.Record) bool {
	name := w.conn.Name()
	for {
		err := w.send(batch)
		if err == nil {
			w.delivered(batch)
			w.restarts.Reset()
			w.mu.Lock()
			recovered := w.failing
			w.failing = false
			w.mu.Unlock()
			if recovered {
				w.b.log.Info("audit sink recovered", "sink", name)
				w.b.emitInternal(audit.AuditSinkRecoveredFields{Sink: name, Reason: "delivery resumed", Undelivered: uint64(w.q.size())})
			}
			return true
		}
		// What the sink stored before it failed is delivered: it leaves
		// the queue now, so neither a retry nor a restart sends it twice.
		var se *audit.Error
		if errors.As(err, &se) && se.Written > 0 {
			n := min(se.Written, len(batch))
			w.delivered(batch[:n])
			if batch = batch[n:]; len(batch) == 0 {
				w.markFailing(err)
				return true
			}
		}
		// The client counted a failed RPC; with no plugin running there
		// was no RPC, and the bus counts. CRITICAL events waiting on this
		// sink learn of the failure now; every event stays queued and is
		// delivered when the sink is back.
		// Identity, not errors.Is: audit.Error matches any error of
		// its reason, and a failed RPC is UNAVAILABLE too.
		if err == errNotRunning {
			w.countUndelivered(batch)
		} else {
			w.markCounted(batch)
		}
		w.b.settle(name, batch, err, true)
		w.markFailing(err)
		if errors.As(err, &se) && se.Reason == audit.ReasonInvalidEvent {
			// Only a bug can make the host send an invalid event: find it,
			// keep it visible in the log, and let the rest through.
			return w.deliverOneByOne(batch)
		}
		if !w.sleep(w.retryDelay(err)) {
			return false
		}
		if w.needsRestart(err) {
			if !w.restart() {
				return false
			}
		}
	}
}

// delivered takes events, acknowledged by the sink, off the queue and tells
// their CRITICAL emitters.
func (w *sinkDelivery) delivered(events []audit.Record) {
	if len(events) == 0 {
		return
	}
	name := w.conn.Name()
	w.mu.Lock()
	w.acked = max(w.acked, events[len(events)-1].Seq)
	w.mu.Unlock()
	if cerr := w.q.commit(len(events)); cerr != nil {
		w.b.log.Error("delivered, but could not advance the spool position (events may be sent again; the file sink skips them)", "sink", name, "error", cerr)
	}
	w.b.settle(name, events, nil, false)
}

// maxRetryDelay bounds the wait between delivery attempts to a plugin that
// runs: a sink whose receiver comes back is resumed within it. A plugin
// that has to be restarted backs off further (pluginhost.RestartMax).
const maxRetryDelay = time.Second

func (w *sinkDelivery) retryDelay(err error) time.Duration {
	d := w.restarts.Next()
	if w.needsRestart(err) {
		return d
	}
	return min(d, maxRetryDelay)
}

func (w *sinkDelivery) send(batch []audit.Record) error {
	return w.sendBy(context.Background(), batch, time.Time{})
}

// sendBy sends batch within rpcTimeout, by deadline (unless zero) and, when
// ctx can end, while it lasts.
func (w *sinkDelivery) sendBy(ctx context.Context, batch []audit.Record, deadline time.Time) error {
	client := w.current()
	if client == nil {
		return errNotRunning
	}
	if limit := time.Now().Add(rpcTimeout); deadline.IsZero() || limit.Before(deadline) {
		deadline = limit
	}
	sctx, cancel := context.WithDeadline(w.ctx, deadline)
	defer cancel()
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, cancel)
		defer stop()
	}
	return client.EmitRecords(sctx, batch)
}

// errNotRunning is a delivery that found no plugin to send to.
var errNotRunning = &audit.Error{Op: "emit_batch", Reason: audit.ReasonUnavailable, Msg: "plugin not running"}

// needsRestart: the plugin process is gone, unreachable or shut down; a
// sink-level failure (a full disk) is retried on the running plugin.
func (w *sinkDelivery) needsRestart(err error) bool {
	if _, crashed := w.conn.Crash(); crashed {
		return true
	}
	var se *audit.Error
	return errors.As(err, &se) && (se.Reason == audit.ReasonUnavailable || se.Reason == audit.ReasonShutDown || se.Reason == audit.ReasonNotConfigured)
}

// restart records a crash, ends what is left of the plugin and starts it
// again (with backoff between attempts) until it runs or the loop stops.
func (w *sinkDelivery) restart() bool {
	name := w.conn.Name()
	if ev, crashed := w.conn.Crash(); crashed {
		if err := w.b.Emit(context.Background(), ev); err != nil && !errors.Is(err, ErrClosed) {
			w.b.log.Error("could not record a plugin crash", "sink", name, "error", err)
		}
	}
	w.conn.Stop()
	for {
		ctx, cancel := context.WithTimeout(w.ctx, rpcTimeout)
		client, err := w.conn.Start(ctx)
		cancel()
		if err == nil {
			w.setClient(client)
			w.b.log.Info("audit sink plugin restarted", "sink", name)
			return true
		}
		w.b.log.Error("audit sink plugin did not restart", "sink", name, "error", err)
		w.conn.Stop()
		if !w.restarts.Wait(w.stop) {
			return false
		}
	}
}

func (w *sinkDelivery) deliverOneByOne(batch []audit.Record) bool {
	for i := range batch {
		err := w.send(batch[i : i+1])
		var se *audit.Error
		switch {
		case err == nil:
		case errors.As(err, &se) && se.Reason == audit.ReasonInvalidEvent:
			w.b.log.Error("BUG: the host made an invalid audit event; it is dropped from this sink", "sink", w.conn.Name(), "seq", batch[i].Seq, "type", batch[i].Type, "error", err)
		default:
			return w.deliver(batch[i:]) // back to the normal path for the rest
		}
		w.b.settle(w.conn.Name(), batch[i:i+1], err, true)
		if cerr := w.q.commit(1); cerr != nil {
			w.b.log.Error("could not advance the queue", "sink", w.conn.Name(), "error", cerr)
		}
	}
	return true
}

// finish drains the queue until the deadline, then spools what is left,
// sends the Shutdown RPC (flush and close) and ends the plugin.
func (w *sinkDelivery) finish(deadline time.Time) error {
	name := w.conn.Name()
	w.mu.Lock()
	started := w.started
	w.mu.Unlock()
	if started {
		select {
		case <-w.done:
		case <-time.After(time.Until(deadline)):
			close(w.stop)
			w.cancel()
			<-w.done
		}
	}
	var errs []error
	n, err := w.q.spill()
	if err != nil {
		errs = append(errs, fmt.Errorf("sink %s: spool %d undelivered events: %w", name, n, err))
	} else if n > 0 {
		// The host gave up on these for this run: they are failures of
		// this run (counted once), and the run did not end complete.
		if serr := w.q.spool.scan(w.countUndelivered); serr != nil {
			w.b.log.Error("could not count the spooled events", "sink", name, "error", serr)
		}
		w.b.log.Warn("events not delivered before the shutdown deadline were spooled for the next start", "sink", name, "events", n)
		errs = append(errs, fmt.Errorf("sink %s: %d events not delivered; spooled for the next start", name, n))
	}
	if err := w.q.spool.close(); err != nil {
		errs = append(errs, err)
	}
	if client := w.current(); client != nil {
		grace := max(time.Until(deadline), 2*time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		if err := client.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("sink %s: shutdown: %w", name, err))
		}
		cancel()
	}
	w.conn.Stop()
	w.cancel()
	return errors.Join(errs...)
}
