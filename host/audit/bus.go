// Package audit is the host's audit bus: the one emitter of audit events.
// Its sequencer (sequencer.go) seals every event into the node's
// transparency log (package trail: seq, chain, Merkle tree, signed
// checkpoints, persisted in the state dir); its fan-out (fanout.go,
// delivery.go, queue.go, spool.go; direct.go for a CRITICAL emitter that
// delivers to an idle sink itself) queues every record for every sink with
// batching, returns from a CRITICAL emit only when the configured number of
// sinks made it durable, re-delivers what a sink did not acknowledge after
// its plugin restarts, and on shutdown drains, records HostStopped last,
// flushes and closes every sink, and spools what missed the deadline for
// the next start.
package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vramward/vramward/host/trail"
	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audit/sinkclient"
)

// Bus is the audit bus. It is safe for concurrent use.
type Bus struct {
	opts Options
	log  hclog.Logger
	m    *busMetrics

	mu     busLock    // orders sealing with enqueueing
	seq    *sequencer // under mu
	closed bool
	sinks  []*sinkDelivery
	// wmu guards waiters, apart from mu: a delivery reports to them while
	// the log may be held (a state save on a slow disk).
	wmu      sync.Mutex
	waiters  map[uint64]*waiter
	stopTick chan struct{}
	// prepare wakes prepareSigning: a checkpoint used the signing nonces.
	prepare chan struct{}
	witness *witnesses // nil without witnesses

	// Recovered is set when the last run did not stop cleanly: this run
	// recorded AuditRecovered first.
	Recovered bool
	// PublicKey is the log's first public key (state_dir/audit.pub).
	PublicKey string
}

// New opens the chain state and starts one delivery loop per sink. The
// sinks' plugins are started by their delivery loops.
func New(opts Options, conns []SinkConn) (*Bus, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 10000
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 512
	}
	if opts.SpoolMaxBytes <= 0 {
		opts.SpoolMaxBytes = 1 << 30
	}
	if opts.CriticalTimeout <= 0 {
		opts.CriticalTimeout = 5 * time.Second
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	m, err := newBusMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	if opts.SinkMetrics == nil {
		if opts.SinkMetrics, err = sinkclient.NewMetrics(opts.Registerer); err != nil {
			return nil, err
		}
	}
	if opts.Origin == "" {
		opts.Origin = trail.Origin(opts.Actor.WorkerID)
	}
	seq, err := openSequencer(opts, m)
	if err != nil {
		return nil, err
	}
	b := &Bus{opts: opts, log: opts.Logger, m: m, mu: make(busLock, 1), seq: seq, waiters: map[uint64]*waiter{}, Recovered: seq.recovered != nil, stopTick: make(chan struct{}), prepare: make(chan struct{}, 1)}
	if len(opts.Witnesses) > 0 {
		names := make([]string, len(opts.Witnesses))
		for i, w := range opts.Witnesses {
			names[i] = w.Name
		}
		seq.setWitnesses(names)
		if b.witness, err = startWitnesses(b, opts.Witnesses); err != nil {
			return nil, err
		}
	}
	if pub, err := os.ReadFile(filepath.Join(opts.StateDir, PublicKeyFile)); err == nil {
		b.PublicKey, _, _ = strings.Cut(strings.TrimSpace(string(pub)), "\n")
	}
	for _, c := range conns {
		sp, err := openSpool(filepath.Join(opts.StateDir, "spool-"+c.Name()+".jsonl"), opts.SpoolMaxBytes)
		if err != nil {
			return nil, err
		}
		name := c.Name()
		opts.SinkMetrics.InitSink(name)
		q := newQueue(opts.QueueSize, sp, func(n int) { m.queueDepth.WithLabelValues(name).Set(float64(n)) })
		m.spoolLost.WithLabelValues(name).Add(float64(sp.lost))
		if sp.lost > 0 {
			b.log.Error("the sink's spool held damaged records (a tail torn by a crash or a full disk, or frames failing their checksum): they were cut off or are skipped, and that sink's copy lacks them",
				"sink", name, "records", sp.lost, "spool", sp.path)
		}
		if sp.pending > 0 {
			b.log.Info("replaying events spooled by the last run", "sink", name, "events", sp.pending)
		}
		b.sinks = append(b.sinks, newSinkDelivery(b, c, q))
		seq.spools = append(seq.spools, spoolSource(sp))
	}
	seq.gateOpened = b.releaseGate
	b.mu.Lock()
	st, err := b.seq.start()
	if err == nil {
		b.fanOut(st, noWaiter)
	}
	b.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if skew := b.seq.resumeJump(); skew != 0 {
		b.clockJumped(skew, "start")
	}
	go b.tick()
	go b.prepareSigning()
	signal(b.prepare) // for the first checkpoint
	return b, nil
}

// prepareSigning makes the next checkpoint's signing nonces once a
// checkpoint has used them (trail.PrivateKey.Prepare): they are most of
// what signing costs, and made here they are off the path of the next
// CRITICAL emit. It is a goroutine of its own, woken before the push that
// wakes the sinks' deliveries, so that the scheduler runs a delivery
// first: made by the emitter under the lock, the nonces held a delivery
// back (it waited for the emitter's P) as long as they saved.
func (b *Bus) prepareSigning() {
	for {
		select {
		case <-b.stopTick:
			return
		case <-b.prepare:
		}
		b.mu.Lock()
		if !b.closed {
			b.seq.prepareSigning()
		}
		b.mu.Unlock()
	}
}

// releaseGate hands out what the epoch gate released: the state holding
// the new epoch's key is durable.
func (b *Bus) releaseGate() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.fanOut(step{records: b.seq.pass(nil, false)}, noWaiter)
	}
}

// clockJumped records that the wall clock moved against the monotonic one.
func (b *Bus) clockJumped(skew time.Duration, detected string) {
	b.log.Warn("the wall clock jumped: record times around it are not comparable; epochs are timed by the monotonic clock", "skew", skew.Round(time.Millisecond).String(), "detected", detected)
	b.emitInternal(audit.AuditClockJumpedFields{SkewSeconds: int64(skew.Round(time.Second) / time.Second), Detected: detected})
}

// Start launches every sink's plugin and its delivery loop. It returns the
// sinks that could not be started; they count as failing (AuditSinkFailed
// is recorded, CRITICAL emits waiting on them learn it at once) and their
// loops keep retrying.
func (b *Bus) Start(ctx context.Context) map[string]error {
	failed := map[string]error{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, w := range b.sinks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.connect(ctx); err != nil {
				mu.Lock()
				failed[w.conn.Name()] = err
				mu.Unlock()
				w.markFailing(err)
			}
			w.launch()
		}()
	}
	wg.Wait()
	return failed
}

// tick makes the checkpoints that time calls for: checkpoint_interval
// after the last one when records were added, and at an epoch's end even
// on an idle host, so a key does not outlive its epoch.
func (b *Bus) tick() {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-b.stopTick:
			return
		case <-t.C:
		}
		b.mu.Lock()
		var skew time.Duration
		var jumped bool
		if !b.closed {
			var st step
			st, skew, jumped = b.seq.tick()
			b.fanOut(st, noWaiter)
		}
		b.mu.Unlock()
		if jumped {
			b.clockJumped(skew, "running")
		}
	}
}

// Emit records an event. A non-CRITICAL event returns once queued for every
// sink. A CRITICAL event returns nil only when the required sinks (all, or
// any one) made it durable; otherwise a *CriticalError the caller must act on
// (fail closed). The event stays queued for every sink either way.
func (b *Bus) Emit(ctx context.Context, e audit.Event) error {
	w, deadline, err := b.submit(&e, waitDelivering)
	if err != nil || w == nil {
		return err
	}
	if w.claimed != nil {
		w.claimed.deliverClaimed(ctx, w.claimedBatch, deadline)
		if w.prepareAfter {
			signal(b.prepare)
		}
	}
	return b.awaitCritical(ctx, e, w, deadline)
}

// Submit queues e at once and returns how to wait for it: for a CRITICAL
// event the wait is Emit's, for others it returns nil at once. Callers that
// cannot block (a sink's own plugin start) submit now and wait elsewhere, so
// the event keeps its place in the chain and cannot be lost to a shutdown.
func (b *Bus) Submit(e audit.Event) (func(context.Context) error, error) {
	w, deadline, err := b.submit(&e, waitQueued)
	if err != nil {
		return nil, err
	}
	if w == nil {
		return func(context.Context) error { return nil }, nil
	}
	return func(ctx context.Context) error { return b.awaitCritical(ctx, e, w, deadline) }, nil
}

// submit queues e; for a CRITICAL event it returns the waiter to wait on
// until deadline.
func (b *Bus) submit(e *audit.Event, how emitWait) (*waiter, time.Time, error) {
	deadline := time.Now().Add(b.opts.CriticalTimeout)
	if e.Severity == audit.Critical {
		// A CRITICAL emit returns by critical_timeout even when the log is
		// held that long (a state fdatasync the sequencer waits for at an
		// epoch's end, on a hung disk): unsealed, it took no seq.
		t := time.NewTimer(time.Until(deadline))
		locked := b.mu.lockBy(t.C)
		t.Stop()
		if !locked {
			for _, s := range b.sinks {
				b.opts.SinkMetrics.CountUndelivered(s.conn.Name(), e.Severity, 1)
			}
			return nil, deadline, fmt.Errorf("CRITICAL audit event %s not recorded: the log stayed busy for critical_timeout (%s), its state's disk may hang", e.Type, b.opts.CriticalTimeout)
		}
	} else {
		b.mu.Lock()
	}
	if b.closed {
		b.mu.Unlock()
		return nil, deadline, ErrClosed
	}
	w, err := b.enqueue(e, deadline, how)
	b.mu.Unlock()
	return w, deadline, err
}

// enqueue seals e and queues it for every sink, by deadline; b.mu is held.
func (b *Bus) enqueue(e *audit.Event, deadline time.Time, how emitWait) (*waiter, error) {
	st, err := b.seq.emit(e, e.Severity == audit.Critical, deadline)
	if err != nil {
		// Refused before it was sealed: every sink misses it.
		for _, s := range b.sinks {
			b.opts.SinkMetrics.CountUndelivered(s.conn.Name(), e.Severity, 1)
		}
		return nil, err
	}
	return b.fanOut(st, how)
}

// emitInternal records an event the bus itself raises (sink failures,
// plugin crashes). Its failure is logged: there is nowhere else to record it.
func (b *Bus) emitInternal(f audit.Fields) {
	e, err := audit.Make(audit.Actor{}, f)
	if err == nil {
		err = b.Emit(context.Background(), e)
	}
	if err != nil && !errors.Is(err, ErrClosed) {
		b.log.Error("could not record an audit event about the audit system", "type", f.EventType(), "error", err)
	}
}

// Reopen asks every running sink to reopen its outputs. A failure is
// logged and counted by the sink's client; the sink keeps its old output.
func (b *Bus) Reopen(ctx context.Context) {
	for _, s := range b.sinks {
		if c := s.current(); c != nil {
			if err := c.Reopen(ctx); err != nil {
				b.log.Error("sink did not reopen its output", "sink", s.conn.Name(), "error", err)
			}
		}
	}
}

// Close is the one shutdown path of the audit system: stop taking events,
// record HostStopped as the last event, deliver what is queued until the
// deadline, send Shutdown (flush + close) to every sink, end the plugins,
// spool what was not delivered, and persist the chain state as clean.
func (b *Bus) Close(reason string) error {
	return b.CloseBy(reason, time.Now().Add(b.opts.ShutdownTimeout))
}

// CloseBy is Close with its own delivery deadline (a failed start does not
// wait shutdown_timeout for sinks that never came up).
func (b *Bus) CloseBy(reason string, deadline time.Time) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	undelivered := 0
	for _, s := range b.sinks {
		undelivered = max(undelivered, s.q.size())
	}
	var errs []error
	// A failing state gets one more try, whenever it was last tried: what
	// it holds back goes out with the last records, or is counted.
	released, err := b.seq.retry()
	if err != nil {
		b.log.Error("the log's state still cannot be written at shutdown", "error", err)
	}
	b.fanOut(step{records: b.seq.pass(released, false)}, noWaiter)
	// A checkpoint over everything before HostStopped, then HostStopped
	// with its own: the trail of a clean stop ends covered.
	if b.seq.pending() > 0 {
		b.fanOut(b.seq.next(nil, true), noWaiter)
	}
	last, err := audit.Make(audit.Actor{}, audit.HostStoppedFields{Reason: reason, Undelivered: uint64(undelivered)})
	if err == nil {
		var st step
		if st, err = b.seq.emit(&last, true, deadline); err == nil {
			b.fanOut(st, noWaiter)
		}
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("record HostStopped: %w", err))
	}
	b.fanOut(step{records: b.seq.openGate(deadline)}, noWaiter)
	if held, err := b.seq.dropHeld(); err != nil {
		for _, s := range b.sinks {
			for i := range held {
				s.offeredWhileFailing(&held[i], nil, ErrStateUnwritten)
			}
		}
		errs = append(errs, err)
	}
	b.closed = true
	close(b.stopTick)
	b.mu.Unlock()
	if b.witness != nil {
		b.witness.close()
	}

	for _, s := range b.sinks {
		s.q.close()
	}
	var wg sync.WaitGroup
	var errMu sync.Mutex
	for _, s := range b.sinks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.finish(deadline); err != nil {
				errMu.Lock()
				errs = append(errs, err)
				errMu.Unlock()
			}
		}()
	}
	wg.Wait()
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.seq.close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
