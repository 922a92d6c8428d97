// Package audit is the host's audit bus: the one emitter of audit events.
// It seals every event into the node's transparency log (package trail:
// seq, chain, Merkle tree, signed checkpoints, persisted in the state dir),
// fans every
// event out to every sink through a bounded queue per sink with batching,
// returns from a CRITICAL emit only when the configured number of sinks made
// it durable, re-delivers what a sink did not acknowledge after its plugin
// restarts, and on shutdown drains, records HostStopped last, flushes and
// closes every sink, and spools what missed the deadline for the next start.
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

// SinkConn connects the bus to one sink's plugin. The bus calls Start to
// (re)launch and configure it, Crash to learn whether the plugin process
// ended on its own, and Stop to end it after its Shutdown RPC.
type SinkConn interface {
	Name() string
	Start(ctx context.Context) (*sinkclient.Client, error)
	// Crash returns a PluginCrashed event when the plugin process exited
	// without being asked to, and false while it runs.
	Crash() (audit.Event, bool)
	Stop()
}

// Options configure a bus.
type Options struct {
	ServiceID string
	Actor     audit.Actor
	StateDir  string
	// Origin names the log in its checkpoints (trail.Origin of the worker).
	Origin          string
	Limits          trail.Limits
	Require         string // "all" or "any"
	QueueSize       int
	SpoolMaxBytes   int64 // each sink's spool file; 0: 1 GiB
	BatchSize       int
	BatchWait       time.Duration
	CriticalTimeout time.Duration
	ShutdownTimeout time.Duration
	// RestartMin and RestartMax bound the backoff between plugin restarts.
	RestartMin, RestartMax time.Duration
	Logger                 hclog.Logger
	Registerer             prometheus.Registerer
	// SinkMetrics are the failure counters the sinks' clients share; the
	// bus counts in them the failures it decides itself. Made from
	// Registerer when nil.
	SinkMetrics *sinkclient.Metrics
	// Witnesses cosign every checkpoint off the node.
	Witnesses []Witness
}

// ErrClosed is returned by Emit after shutdown began.
var ErrClosed = errors.New("audit bus is shut down")

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

// Bus is the audit bus. It is safe for concurrent use.
type Bus struct {
	opts  Options
	log   hclog.Logger
	m     *busMetrics
	store *chainStore

	mu    sync.Mutex // orders sealing with enqueueing
	tlog  *trail.Log
	state *stateWriter
	// held are records sealed while the state could not be written (see
	// hold.go), stateTried the last attempt to write it.
	held       []audit.Record
	stateTried time.Time
	// healthMu guards the state's health, which the state writer reports
	// without the bus's lock.
	healthMu   sync.Mutex
	stateErr   error
	stateSince time.Time
	closed     bool
	sinks      []*sinkDelivery
	waiters    map[uint64]*waiter
	stopTick   chan struct{}
	witness    *witnesses // nil without witnesses

	// Recovered is set when the last run did not stop cleanly: this run
	// recorded AuditRecovered first.
	Recovered bool
	// PublicKey is the log's first public key (state_dir/audit.pub).
	PublicKey string
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
	if opts.RestartMin <= 0 {
		opts.RestartMin = 100 * time.Millisecond
	}
	if opts.RestartMax <= 0 {
		opts.RestartMax = 30 * time.Second
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
	tlog, store, rec, err := openLog(opts.StateDir, opts.Origin, opts.Limits, opts.Logger.Info)
	if err != nil {
		return nil, err
	}
	b := &Bus{opts: opts, log: opts.Logger, m: m, store: store, tlog: tlog, waiters: map[uint64]*waiter{}, Recovered: rec != nil, stopTick: make(chan struct{})}
	b.state = newStateWriter(store, opts.Logger.Error, b.stateFailed)
	tlog.Fill = b.fill
	if len(opts.Witnesses) > 0 {
		names := make([]string, len(opts.Witnesses))
		for i, w := range opts.Witnesses {
			names[i] = w.Name
		}
		tlog.SetWitnesses(names)
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
	}
	b.mu.Lock()
	if rec != nil {
		// The crashed run's last records are beyond what it saved: say so
		// first, and continue the log from the saved tree.
		e, err := b.tlog.Recover(rec.reserved, "the last run stopped without a clean shutdown (crash, kill -9 or power loss)")
		if err == nil {
			_, err = b.queueSealed(&e, true)
		}
		if err != nil {
			b.mu.Unlock()
			return nil, fmt.Errorf("record AuditRecovered: %w", err)
		}
	}
	// Marks the state unclean until Close saves it again.
	err = b.store.save(b.tlog, false, true)
	b.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if skew := b.tlog.ResumeJump(); skew != 0 {
		b.clockJumped(skew, "start")
	}
	go b.tick()
	return b, nil
}

// clockJumped records that the wall clock moved against the monotonic one.
func (b *Bus) clockJumped(skew time.Duration, detected string) {
	b.log.Warn("the wall clock jumped: record times around it are not comparable; epochs are timed by the monotonic clock", "skew", skew.Round(time.Millisecond).String(), "detected", detected)
	b.emitInternal(audit.AuditClockJumped, audit.Int("skew_seconds", int64(skew.Round(time.Second)/time.Second)), audit.Str("detected", detected))
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

// RequireMet reports whether enough sinks are up for audit.require (all,
// or any one), and which are not.
func (b *Bus) RequireMet() (bool, []string) {
	var down []string
	for _, s := range b.sinks {
		if !s.isUp() {
			down = append(down, s.conn.Name())
		}
	}
	if b.opts.Require == "any" {
		return len(down) < len(b.sinks), down
	}
	return len(down) == 0, down
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
		skew, jumped := b.tlog.ClockJump()
		if due, _ := b.tlog.Due(); due && !b.closed {
			if _, err := b.queueSealed(nil, true); err != nil {
				b.log.Error("could not make a checkpoint", "error", err)
			}
		} else if !b.closed && time.Since(b.stateTried) >= stateRetryEvery {
			_ = b.retryState() // a failure is counted and logged there
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
	wait, err := b.Submit(e)
	if err != nil {
		return err
	}
	return wait(ctx)
}

// Submit queues e at once and returns how to wait for it: for a CRITICAL
// event the wait is Emit's, for others it returns nil at once. Callers that
// cannot block (a sink's own plugin start) submit now and wait elsewhere, so
// the event keeps its place in the chain and cannot be lost to a shutdown.
func (b *Bus) Submit(e audit.Event) (func(context.Context) error, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, ErrClosed
	}
	w, err := b.enqueue(&e)
	b.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if w == nil {
		return func(context.Context) error { return nil }, nil
	}
	return func(ctx context.Context) error { return b.awaitCritical(ctx, e, w) }, nil
}

// enqueue seals e and queues it for every sink; b.mu is held.
func (b *Bus) enqueue(e *audit.Event) (*waiter, error) {
	b.fill(e)
	if len(b.held) >= b.opts.QueueSize && b.retryState() != nil {
		return nil, b.refuseUnsealed(e)
	}
	r := b.tlog.Seal(e)
	return b.queueSealed(&r, e.Severity == audit.Critical)
}

// fill sets the envelope the bus owns.
func (b *Bus) fill(e *audit.Event) {
	if e.ServiceID == "" {
		e.ServiceID = b.opts.ServiceID
	}
	if e.Actor == (audit.Actor{}) {
		e.Actor = b.opts.Actor
	}
}

// queueSealed queues e (already sealed; nil for a checkpoint alone) for
// every sink, with a checkpoint after it when one is due or force is set (a
// CRITICAL event is covered by a signed checkpoint before its emit
// returns). The state is written before anything is queued, so no signed
// checkpoint ever runs ahead of what a restart continues from. b.mu is
// held.
func (b *Bus) queueSealed(e *audit.Record, force bool) (*waiter, error) {
	critical := e != nil && e.Severity == audit.Critical
	var batch []audit.Record
	if e != nil {
		batch = append(batch, *e)
	}
	// A failing state is tried again first (a CRITICAL emit always tries);
	// while it fails no checkpoint is made: it could not leave, and the
	// state would move on past checkpoints no copy holds.
	if b.stateFailing() != nil && (critical || time.Since(b.stateTried) >= stateRetryEvery) {
		_ = b.retryState() // a failure is counted and logged there
	}
	failing := b.stateFailing() != nil
	due, endEpoch := b.tlog.Due()
	var note []byte
	// A CRITICAL record without its checkpoint still goes to the sinks (it
	// is sealed: dropping it would leave a hole), and its emit fails.
	var ckErr error
	if (force || due) && !failing {
		c, ck, err := b.tlog.Checkpoint(endEpoch)
		if err != nil {
			b.log.Error("could not make a checkpoint", "error", err)
			ckErr = err
		} else {
			batch, note = append(batch, c), ck.Note
		}
	}
	// A witness is offered the checkpoint only once the state holding it
	// is saved; an offer not handed over is withdrawn.
	offers := b.tlog.TakeOffers()
	dispatched := false
	defer func() {
		if !dispatched {
			for _, o := range offers {
				b.tlog.OfferFailed(o.Witness)
			}
		}
	}()
	if len(batch) == 0 {
		return nil, nil
	}
	for i := range batch {
		b.m.events.WithLabelValues(string(batch[i].Type), batch[i].Severity.String()).Inc()
	}
	stateDurable, err := b.writeState(batch[len(batch)-1].Seq, note, endEpoch)
	if err != nil {
		// Held until the state is written: a sink given these now could
		// hold seqs a restart hands out again.
		b.held = append(b.held, batch...)
		if critical {
			cerr := fmt.Errorf("CRITICAL audit event %s (seq %d): persist the log's state: %w", e.Type, e.Seq, err)
			for _, s := range b.sinks {
				s.offeredWhileFailing(e, nil, cerr)
			}
			return nil, cerr
		}
		return nil, nil
	}
	if len(b.held) > 0 {
		batch = append(b.held, batch...)
		b.held = nil
	}
	if stateDurable != nil && b.witness != nil {
		b.witness.dispatch(offers)
		dispatched = true
	}
	if critical && ckErr != nil {
		cerr := fmt.Errorf("CRITICAL audit event %s (seq %d): checkpoint: %w", e.Type, e.Seq, ckErr)
		for _, s := range b.sinks {
			s.offeredWhileFailing(e, nil, cerr)
		}
		b.push(batch, nil)
		return nil, cerr
	}
	var w *waiter
	if critical {
		need := len(b.sinks)
		if b.opts.Require == "any" {
			need = 1
		}
		sev := e.Severity
		w = &waiter{seq: e.Seq, state: stateDurable, need: need, total: len(b.sinks), failed: map[string]error{}, settled: make(chan struct{}),
			countFail: func(sink string) { b.opts.SinkMetrics.CountUndelivered(sink, sev, 1) }}
		b.waiters[e.Seq] = w
	}
	b.push(batch, w)
	return w, nil
}

// push queues batch for every sink; w waits for the CRITICAL record among
// them, if any (the checkpoint that covers it travels with it). b.mu is
// held.
func (b *Bus) push(batch []audit.Record, w *waiter) {
	waiterOf := func(r *audit.Record) *waiter {
		if w != nil && r.Seq == w.seq {
			return w
		}
		return nil
	}
	for _, s := range b.sinks {
		if err := s.q.push(batch...); err != nil {
			// A full spool refuses every event until it drains: say so
			// once, not once an event (each is counted).
			if !errors.Is(err, ErrSpoolFull) || !s.spoolFull.Swap(true) {
				b.log.Error("could not queue an audit event for a sink; it is counted as failed", "sink", s.conn.Name(), "seq", batch[0].Seq, "error", err)
			}
			for i := range batch {
				s.offeredWhileFailing(&batch[i], waiterOf(&batch[i]), err)
			}
			continue
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
	}
}

func (b *Bus) awaitCritical(ctx context.Context, e audit.Event, w *waiter) error {
	defer func() {
		b.mu.Lock()
		delete(b.waiters, e.Seq)
		b.mu.Unlock()
	}()
	// One deadline for both waits: a timer fires once, so a second select
	// on it would wait for ever once the first had taken its tick.
	wctx, cancel := context.WithTimeout(ctx, b.opts.CriticalTimeout)
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
	b.mu.Lock()
	var ws []*waiter
	for i := range events {
		if events[i].Severity == audit.Critical {
			if w, ok := b.waiters[events[i].Seq]; ok {
				ws = append(ws, w)
			}
		}
	}
	b.mu.Unlock()
	for _, w := range ws {
		w.report(sink, err, counted)
	}
}

// failPending tells every CRITICAL emit still waiting that sink failed:
// whatever it holds queued will not be durable in time.
func (b *Bus) failPending(sink string, err error) {
	b.mu.Lock()
	ws := make([]*waiter, 0, len(b.waiters))
	for _, w := range b.waiters {
		ws = append(ws, w)
	}
	b.mu.Unlock()
	for _, w := range ws {
		w.report(sink, err, false)
	}
}

// emitInternal records an event the bus itself raises (sink failures,
// plugin crashes). Its failure is logged: there is nowhere else to record it.
func (b *Bus) emitInternal(t audit.Type, fields ...audit.Field) {
	e, err := audit.New(t, audit.Actor{}, fields...)
	if err == nil {
		err = b.Emit(context.Background(), e)
	}
	if err != nil && !errors.Is(err, ErrClosed) {
		b.log.Error("could not record an audit event about the audit system", "type", t, "error", err)
	}
}

// Depth returns the events waiting for each sink.
func (b *Bus) Depth() map[string]int {
	out := map[string]int{}
	for _, s := range b.sinks {
		out[s.conn.Name()] = s.q.size()
	}
	return out
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

// Up reports whether every sink's plugin is running and configured.
func (b *Bus) Up() bool {
	for _, s := range b.sinks {
		if !s.isUp() {
			return false
		}
	}
	return true
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
	if err := b.retryState(); err != nil {
		b.log.Error("the log's state still cannot be written at shutdown", "error", err)
	}
	// A checkpoint over everything before HostStopped, then HostStopped
	// with its own: the trail of a clean stop ends covered.
	var err error
	if b.tlog.Pending() > 0 {
		_, err = b.queueSealed(nil, true)
	}
	last, nerr := audit.New(audit.HostStopped, audit.Actor{}, audit.Str("reason", reason), audit.Uint("undelivered", uint64(undelivered)))
	if err == nil {
		err = nerr
	}
	if err == nil {
		b.fill(&last)
		r := b.tlog.Seal(&last)
		_, err = b.queueSealed(&r, true)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("record HostStopped: %w", err))
	}
	if err := b.dropHeld(); err != nil {
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
	b.state.close()
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.store.save(b.tlog, true, true); err != nil {
		errs = append(errs, err)
	}
	b.store.close()
	b.tlog.Destroy()
	return errors.Join(errs...)
}

// SinkState is one sink's delivery, for the status view.
type SinkState struct {
	Name  string
	State string // "up", "failing" (its plugin runs) or "down"
	// Since is when the sink began failing (zero while up).
	Since      time.Time
	LastError  string
	QueueDepth int
	SpoolBytes int64
	LastSeq    uint64 // the last seq the sink acknowledged
}

// Sinks reports every sink's delivery.
func (b *Bus) Sinks() []SinkState {
	out := make([]SinkState, 0, len(b.sinks))
	for _, s := range b.sinks {
		st := SinkState{Name: s.conn.Name(), QueueDepth: s.q.size(), SpoolBytes: s.q.spoolBytes()}
		s.mu.Lock()
		st.LastSeq = s.acked
		failing, lastErr, since := s.failing, s.lastErr, s.failingSince
		s.mu.Unlock()
		switch {
		case !s.running():
			st.State = "down"
		case failing:
			st.State = "failing"
		default:
			st.State = "up"
		}
		if st.State != "up" {
			st.Since = since
		}
		if lastErr != nil && st.State != "up" {
			st.LastError = lastErr.Error()
		}
		out = append(out, st)
	}
	return out
}

// TrailState is where the log stands, for the status view.
type TrailState struct {
	Seq, Epoch                                uint64
	LastCheckpointSeq, LastCheckpointTreeSize uint64
	LastCheckpointAt                          time.Time
}

// Trail reports where the log stands.
func (b *Bus) Trail() TrailState {
	b.mu.Lock()
	defer b.mu.Unlock()
	seq, size, at := b.tlog.LastCheckpoint()
	return TrailState{Seq: b.tlog.Seq(), Epoch: b.tlog.Epoch(), LastCheckpointSeq: seq, LastCheckpointTreeSize: size, LastCheckpointAt: at}
}
