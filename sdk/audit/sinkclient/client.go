// Package sinkclient is the host's side of an audit sink plugin: the Client
// that delivers batches of records to one sink and counts every failure in
// Prometheus metrics, and the go-plugin glue that dispenses it. Sink authors
// never need it; package audit is theirs.
package sinkclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/internal/bounded"
	auditv1 "github.com/vramward/vramward/sdk/proto/audit/v1"
)

// Options bind a Client to one configured sink.
type Options struct {
	// Sink is the sink's name in the host config; it labels every metric.
	Sink string
	// Metrics is required: a Client cannot exist without its counters.
	Metrics *Metrics
	Logger  hclog.Logger
	// MaxBatchBytes splits a batch into several RPCs below gRPC's message
	// limit. Default 3 MiB.
	MaxBatchBytes int
	// MaxBatchEvents caps the events of one RPC; a larger EmitBatch is sent
	// as several batches in flight on one stream. Default 512.
	MaxBatchEvents int
}

// Client is the host's handle on one audit sink. Every failed emit, batch
// and flush is counted in Metrics and logged before the error is returned,
// so a caller that drops the error still leaves a trace.
type Client struct {
	rpc  auditv1.AuditSinkClient
	sink string
	m    *Metrics
	log  hclog.Logger
	max  int
	maxN int

	// single is a long-lived EmitStream for one-event emits: a message on
	// an open stream costs about half a unary call's round trip, and the
	// CRITICAL path is made of single emits. smu serialises its users.
	smu    sync.Mutex
	single auditv1.AuditSink_EmitStreamClient
	cancel context.CancelFunc
	// lane, when the plugin serves one, carries the one-message emits
	// instead of single (lane.go); offered is the launcher's until
	// Configure says whether it is served.
	lane    *laneConn
	offered net.Conn
	onLane  atomic.Bool // lane != nil, read without c.smu

	sandbox bounded.SandboxReport
}

func newClient(opts Options, rpc auditv1.AuditSinkClient) (*Client, error) {
	if opts.Metrics == nil {
		return nil, fmt.Errorf("sink client: Metrics are required")
	}
	if opts.Sink == "" {
		return nil, fmt.Errorf("sink client: a sink name is required")
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = 3 << 20
	}
	if opts.MaxBatchEvents <= 0 {
		opts.MaxBatchEvents = 512
	}
	opts.Metrics.initSink(opts.Sink)
	return &Client{rpc: rpc, sink: opts.Sink, m: opts.Metrics, log: opts.Logger, max: opts.MaxBatchBytes, maxN: opts.MaxBatchEvents}, nil
}

// Sink returns the sink name the client is bound to.
func (c *Client) Sink() string { return c.sink }

// Info asks the plugin for its name, version and config schema.
func (c *Client) Info(ctx context.Context) (audit.SinkInfo, error) {
	resp, err := c.rpc.Info(ctx, &auditv1.InfoRequest{})
	if err != nil {
		return audit.SinkInfo{}, c.fail(fromStatus("info", err), nil, 0)
	}
	sch, err := bounded.PluginInfo(resp.GetName(), resp.GetVersion(), resp.GetConfigSchema())
	if err != nil {
		return audit.SinkInfo{}, c.fail(&audit.Error{Op: "info", Reason: audit.ReasonUnavailable, Msg: err.Error()}, nil, 0)
	}
	return audit.SinkInfo{Name: resp.GetName(), Version: resp.GetVersion(), Schema: sch}, nil
}

// Configure sends the sink's config (JSON, as schema.Values.JSON makes it).
func (c *Client) Configure(ctx context.Context, configJSON []byte) error {
	resp, err := c.rpc.Configure(ctx, &auditv1.ConfigureRequest{ConfigJson: configJSON})
	if err != nil {
		return c.fail(fromStatus("configure", err), nil, 0)
	}
	c.sandbox.Set(resp.GetSandboxed(), resp.GetSandbox())
	c.takeLane(resp.GetRecordLane())
	return nil
}

// Sandbox says whether the plugin restricted itself after Configure, and
// how (or why not).
func (c *Client) Sandbox() (bool, string) { return c.sandbox.Get() }

func (c *Client) countShortened(n uint64) {
	if n > 0 {
		c.m.shortened.WithLabelValues(c.sink).Add(float64(n))
		c.log.Warn("the sink stored events shortened: they exceed its size limit", "sink", c.sink, "events", n)
	}
}

// Emit sends one event, on the long-lived stream. For a CRITICAL event it
// returns nil only when the sink flushed it.
func (c *Client) Emit(ctx context.Context, e audit.Event) error {
	return c.EmitBatch(ctx, []audit.Event{e})
}

// EmitBatch encodes events (their record lines) as it frames them, and
// sends them as EmitRecords does.
func (c *Client) EmitBatch(ctx context.Context, events []audit.Event) error {
	return c.emit(ctx, eventBatch(events))
}

// EmitRecords sends records in order, their lines as they are (the host
// encoded each once, when it linked it), in as few RPCs as the size limit
// allows. Several such batches go over one stream with up to streamWindow
// of them in flight, so the sink writes one while the next travels. On
// error, the returned *audit.Error's Written events at the front were
// delivered (earlier batches, and a prefix the sink reported); the rest are
// counted as failed and none of them should be considered delivered.
func (c *Client) EmitRecords(ctx context.Context, records []audit.Record) error {
	return c.emit(ctx, recordBatch(records))
}

// batch is what the client sends: events it encodes, or records whose
// lines it copies.
type batch interface {
	Len() int
	Severity(i int) audit.Severity
	AppendLine(dst []byte, i int) []byte
}

type eventBatch []audit.Event

func (b eventBatch) Len() int                            { return len(b) }
func (b eventBatch) Severity(i int) audit.Severity       { return b[i].Severity }
func (b eventBatch) AppendLine(dst []byte, i int) []byte { return b[i].AppendJSON(dst) }

type recordBatch []audit.Record

func (b recordBatch) Len() int                            { return len(b) }
func (b recordBatch) Severity(i int) audit.Severity       { return b[i].Severity }
func (b recordBatch) AppendLine(dst []byte, i int) []byte { return append(dst, b[i].Line...) }

// sendOne sends one message (an event, or a batch that fits one message) on
// the long-lived stream, opening it when there is none: a unary RPC costs a
// new HTTP/2 stream each time, which doubles a CRITICAL emit's latency on a
// fast disk. The stream ends at its first failure (the server's rule), so a
// failed emit drops it and the next one opens another.
func (c *Client) sendOne(ctx context.Context, req *auditv1.EmitBatchRequest) (*auditv1.EmitBatchResponse, error) {
	c.smu.Lock()
	defer c.smu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if c.lane != nil {
		resp, broken, err := c.lane.roundTrip(ctx, req)
		if broken {
			c.log.Warn("the record lane broke; emits go over gRPC from now on", "sink", c.sink, "error", err)
			c.dropLane()
		}
		return resp, err
	}
	if c.single == nil {
		sctx, cancel := context.WithCancel(context.Background())
		st, err := c.rpc.EmitStream(sctx)
		if err != nil {
			cancel()
			return nil, err
		}
		c.single, c.cancel = st, cancel
	}
	st := c.single
	// The stream outlives this call, so the call's deadline cannot be its
	// context: when ctx ends first, the stream is cancelled (and dropped,
	// so no later emit reads this event's answer as its own).
	stop := context.AfterFunc(ctx, c.cancel)
	var resp *auditv1.EmitBatchResponse
	err := st.Send(req)
	if err == nil {
		resp, err = st.Recv()
	} else if _, rerr := st.Recv(); rerr != nil && !errors.Is(rerr, io.EOF) {
		err = rerr // the stream's own error says more than Send's EOF
	}
	if !stop() {
		c.dropStream()
		if err != nil {
			return nil, ctx.Err()
		}
		return resp, nil
	}
	if err != nil {
		c.dropStream()
	}
	return resp, err
}

func (c *Client) dropStream() {
	if c.cancel != nil {
		c.cancel()
	}
	c.single, c.cancel = nil, nil
}

// closeStream ends the long-lived stream cleanly, before a Shutdown.
func (c *Client) closeStream() {
	c.smu.Lock()
	defer c.smu.Unlock()
	if c.single != nil {
		_ = c.single.CloseSend()
		_, _ = c.single.Recv() // io.EOF once the server has finished
	}
	c.dropStream()
	c.dropLane()
}

func (c *Client) emit(ctx context.Context, events batch) error {
	n, req, top := c.nextBatch(events, 0)
	if n == events.Len() {
		start := time.Now()
		resp, err := c.sendOne(ctx, req)
		c.release(req)
		c.m.emitDuration.WithLabelValues(c.sink, top.String()).Observe(time.Since(start).Seconds())
		if err != nil {
			e := fromStatus("emit_batch", err)
			e.Written = min(e.Written, events.Len())
			return c.fail(e, events, e.Written)
		}
		c.countShortened(resp.GetShortened())
		if top == audit.Critical && !resp.GetDurable() {
			return c.fail(&audit.Error{Op: "emit_batch", Reason: audit.ReasonNotDurable, Msg: "batch with a CRITICAL event acknowledged without a flush"}, events, 0)
		}
		return nil
	}
	c.release(req)
	return c.emitStream(ctx, events)
}

// streamWindow is how many batches may be in flight on one stream.
const streamWindow = 4

type sentBatch struct {
	n     int
	top   audit.Severity
	start time.Time
}

func (c *Client) emitStream(ctx context.Context, events batch) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.EmitStream(ctx)
	if err != nil {
		return c.fail(fromStatus("emit_batch", err), events, 0)
	}
	inflight := make(chan sentBatch, streamWindow)
	sendErr := make(chan error, 1)
	go func() {
		defer close(inflight)
		for at := 0; at < events.Len(); {
			n, req, top := c.nextBatch(events, at)
			sb := sentBatch{n: n, top: top, start: time.Now()}
			select {
			case inflight <- sb:
			case <-ctx.Done():
				c.release(req)
				return
			}
			err := stream.Send(req)
			c.release(req)
			if err != nil {
				sendErr <- err
				return
			}
			at += n
		}
		sendErr <- stream.CloseSend()
	}()
	done := 0
	for sb := range inflight {
		resp, err := stream.Recv()
		if err != nil {
			cancel()
			e := fromStatus("emit_batch", err)
			e.Written = done + min(e.Written, sb.n)
			return c.fail(e, events, e.Written)
		}
		c.m.emitDuration.WithLabelValues(c.sink, sb.top.String()).Observe(time.Since(sb.start).Seconds())
		c.countShortened(resp.GetShortened())
		if sb.top == audit.Critical && !resp.GetDurable() {
			cancel()
			return c.fail(&audit.Error{Op: "emit_batch", Reason: audit.ReasonNotDurable, Msg: "batch with a CRITICAL event acknowledged without a flush", Written: done}, events, done)
		}
		done += sb.n
	}
	if err := <-sendErr; err != nil && done < events.Len() {
		e := fromStatus("emit_batch", err)
		e.Written = done
		return c.fail(e, events, done)
	}
	// Every batch is acknowledged; let the stream end cleanly.
	if _, err := stream.Recv(); err != nil && !errors.Is(err, io.EOF) {
		c.log.Debug("audit stream did not end cleanly after every batch was acknowledged", "sink", c.sink, "error", err)
	}
	return nil
}

func (c *Client) release(req *auditv1.EmitBatchRequest) {
	recs := req.Records[:0]
	recordBufs.Put(&recs)
}

// recordBufs recycles the record buffers of batches.
var recordBufs = sync.Pool{New: func() any { b := make([]byte, 0, 256<<10); return &b }}

// nextBatch takes events from index from on, up to the byte limit (at
// least one), framed as records.
func (c *Client) nextBatch(events batch, from int) (int, *auditv1.EmitBatchRequest, audit.Severity) {
	recs := (*recordBufs.Get().(*[]byte))[:0]
	top := audit.Severity(0)
	n := 0
	for i := from; i < events.Len(); i++ {
		if i-from == c.maxN {
			break
		}
		before := len(recs)
		recs = append(events.AppendLine(recs, i), '\n')
		if i > from && len(recs) > c.max {
			recs = recs[:before]
			break
		}
		top = max(top, events.Severity(i))
		n++
	}
	return n, &auditv1.EmitBatchRequest{Records: recs}, top
}

// Flush asks the sink to make everything it accepted durable.
func (c *Client) Flush(ctx context.Context) error {
	if _, err := c.rpc.Flush(ctx, &auditv1.FlushRequest{}); err != nil {
		return c.fail(fromStatus("flush", err), nil, 0)
	}
	return nil
}

// Reopen asks the sink to reopen its outputs (after an external rotation).
func (c *Client) Reopen(ctx context.Context) error {
	if _, err := c.rpc.Reopen(ctx, &auditv1.ReopenRequest{}); err != nil {
		return c.fail(fromStatus("reopen", err), nil, 0)
	}
	return nil
}

// Shutdown flushes and closes the sink. It is idempotent.
func (c *Client) Shutdown(ctx context.Context) error {
	c.closeStream()
	if _, err := c.rpc.Shutdown(ctx, &auditv1.ShutdownRequest{}); err != nil {
		return c.fail(fromStatus("shutdown", err), nil, 0)
	}
	return nil
}

// fail counts and logs a failure, then returns it. The events of batch
// from index from on are those it left undelivered.
func (c *Client) fail(err *audit.Error, events batch, from int) error {
	switch err.Op {
	case "flush", "shutdown":
		c.m.flushFailures.WithLabelValues(c.sink).Inc()
	}
	var perSeverity [audit.Critical + 1]int
	undelivered := 0
	for i := from; events != nil && i < events.Len(); i++ {
		undelivered++
		if sev := events.Severity(i); sev.Valid() {
			perSeverity[sev]++
		}
	}
	for _, sev := range audit.Severities() {
		if n := perSeverity[sev]; n > 0 {
			c.m.emitFailures.WithLabelValues(c.sink, sev.String()).Add(float64(n))
		}
	}
	if n := perSeverity[audit.Critical]; n > 0 {
		c.m.criticalEmitFailures.WithLabelValues(c.sink).Add(float64(n))
		c.log.Error("CRITICAL audit events not made durable", "sink", c.sink, "op", err.Op, "reason", err.Reason, "events", n, "error", err.Msg)
	} else {
		c.log.Warn("audit sink operation failed", "sink", c.sink, "op", err.Op, "reason", err.Reason, "events", undelivered, "error", err.Msg)
	}
	return err
}
