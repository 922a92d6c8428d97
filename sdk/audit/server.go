package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/vramward/vramward/sdk/sandbox"
	"google.golang.org/grpc"

	"github.com/hashicorp/go-hclog"

	auditv1 "github.com/vramward/vramward/sdk/proto/audit/v1"
	"github.com/vramward/vramward/sdk/schema"
	"github.com/vramward/vramward/sdk/version"
)

// server turns AuditSink RPCs into Sink calls and owns the guarantees a sink
// author must not be able to forget: flush before acknowledging CRITICAL,
// one idempotent shutdown that flushes then closes, nothing accepted after it.
type server struct {
	auditv1.UnimplementedAuditSinkServer

	sink   Sink
	info   SinkInfo
	logger hclog.Logger

	mu         sync.Mutex // serialises every Sink call
	configured bool
	shutDown   bool
	shutErr    error
	// bgFlushErr is a failed periodic flush, reported by the next RPC that
	// writes or flushes so it is counted by the host, not only logged here.
	bgFlushErr error
	stopTicker chan struct{}
	// shortened is the sink's Shortened() after the last write.
	shortened uint64
	// lane is the record lane the host passed, served from Serve on
	// (lane.go); nil without one.
	lane io.ReadWriteCloser
}

func newServer(sink Sink, logger hclog.Logger) *server {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	info := sink.Info()
	if err := info.Schema.Check(); err != nil {
		// A broken schema is the plugin author's bug; fail at start-up, loudly.
		panic(fmt.Sprintf("audit sink %q: %v", info.Name, err))
	}
	return &server{sink: sink, info: info, logger: logger}
}

func (s *server) Info(context.Context, *auditv1.InfoRequest) (*auditv1.InfoResponse, error) {
	return &auditv1.InfoResponse{
		Name:         s.info.Name,
		Version:      s.info.Version,
		ConfigSchema: schema.ToProto(s.info.Schema),
		SdkVersion:   version.SDK,
	}, nil
}

func (s *server) Configure(ctx context.Context, req *auditv1.ConfigureRequest) (*auditv1.ConfigureResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.shutDown:
		return nil, (&Error{Op: "configure", Reason: ReasonShutDown}).toStatus()
	case s.configured:
		return nil, (&Error{Op: "configure", Reason: ReasonConfigured, Msg: "Configure is called once"}).toStatus()
	}
	vals, err := s.info.Schema.Decode(req.GetConfigJson())
	if err != nil {
		return nil, asError("configure", ReasonInvalidConfig, err).toStatus()
	}
	if err := s.sink.Configure(ctx, vals); err != nil {
		return nil, asError("configure", ReasonInvalidConfig, err).toStatus()
	}
	s.configured = true
	sb := sandbox.Apply(s.sink, sandbox.Rules{})
	s.logger.Info("configured", "sandboxed", sb.Enforced, "sandbox", sb.Detail)
	if pf, ok := s.sink.(PeriodicFlusher); ok && pf.FlushInterval() > 0 {
		s.stopTicker = make(chan struct{})
		go s.flushEvery(pf.FlushInterval(), s.stopTicker)
	}
	return &auditv1.ConfigureResponse{Sandboxed: sb.Enforced, Sandbox: sb.Detail, RecordLane: s.lane != nil}, nil
}

func (s *server) flushEvery(d time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		if !s.shutDown {
			ctx, cancel := context.WithTimeout(context.Background(), d+10*time.Second)
			if err := s.sink.Flush(ctx); err != nil {
				s.logger.Error("periodic flush failed; the next emit or flush will report it", "error", err)
				s.bgFlushErr = err
			} else if s.bgFlushErr != nil {
				// A flush makes everything accepted so far durable: the
				// earlier failure no longer stands (a syslog receiver that
				// came back), and reporting it later would fail a healthy
				// sink.
				s.logger.Info("periodic flush succeeded again; the earlier failure is cleared")
				s.bgFlushErr = nil
			}
			cancel()
		}
		s.mu.Unlock()
	}
}

// ready is called with mu held before any write or flush.
func (s *server) ready(op string) *Error {
	switch {
	case s.shutDown:
		return &Error{Op: op, Reason: ReasonShutDown, Msg: "the sink was shut down"}
	case !s.configured:
		return &Error{Op: op, Reason: ReasonNotConfigured, Msg: "Configure was not called"}
	case s.bgFlushErr != nil:
		err := asError(op, ReasonFlushFailed, fmt.Errorf("periodic flush failed: %w", s.bgFlushErr))
		s.bgFlushErr = nil
		return err
	}
	return nil
}

func (s *server) EmitBatch(ctx context.Context, req *auditv1.EmitBatchRequest) (*auditv1.EmitBatchResponse, error) {
	return s.emitOne(ctx, req)
}

func (s *server) EmitStream(stream grpc.BidiStreamingServer[auditv1.EmitBatchRequest, auditv1.EmitBatchResponse]) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		resp, err := s.emitOne(stream.Context(), req)
		if err != nil {
			// Ending the stream here is what keeps order: nothing sent after
			// a failed batch is written.
			return err
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// emitOne writes one message's records, as EmitBatch, the stream and the
// record lane all do; the error is the gRPC status to answer with.
func (s *server) emitOne(ctx context.Context, req *auditv1.EmitBatchRequest) (*auditv1.EmitBatchResponse, error) {
	records, err := batchRecords(req)
	if err != nil {
		return nil, (&Error{Op: "emit_batch", Reason: ReasonInvalidEvent, Msg: err.Error()}).toStatus()
	}
	durable, short, serr := s.write(ctx, "emit_batch", records)
	if serr != nil {
		return nil, serr.toStatus()
	}
	return &auditv1.EmitBatchResponse{Durable: durable, Shortened: short}, nil
}

// batchRecords parses and validates a batch's records. Every event's
// strings and every Line slice the request's buffer; the fields of all
// events share one backing array.
func batchRecords(req *auditv1.EmitBatchRequest) ([]Record, error) {
	buf := req.GetRecords()
	if len(buf) == 0 {
		return nil, nil
	}
	if buf[len(buf)-1] != '\n' {
		return nil, fmt.Errorf("the last record does not end in a newline")
	}
	// The events' strings alias the request's buffer: the message owns it
	// (the decoder copied it out of the transport's), nothing writes to it,
	// and a sink must treat a record as read-only. Copying it would cost a
	// tenth of the plugin's CPU per event.
	recs := unsafe.String(&buf[0], len(buf))
	n := strings.Count(recs, "\n")
	out := make([]Record, 0, n)
	fields := make([]Field, 0, n*8)
	for i, at := 0, 0; at < len(recs); i++ {
		j := at + strings.IndexByte(recs[at:], '\n')
		e, err := parseCanonicalInto(recs[at:j], &fields)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
		out = append(out, Record{Event: e, Line: buf[at:j:j]})
		at = j + 1
	}
	return out, nil
}

// write hands records to the sink and, if any is CRITICAL, flushes before
// answering. durable is true only after a successful flush; shortened is
// how many of the records the sink stored shortened.
func (s *server) write(ctx context.Context, op string, records []Record) (durable bool, shortened uint64, _ *Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ready(op); err != nil {
		return false, 0, err
	}
	if len(records) == 0 {
		return false, 0, nil
	}
	err := s.sink.Write(ctx, records)
	if sh, ok := s.sink.(Shortener); ok {
		// Counted even when the write failed: what was shortened and
		// then stored stays shortened.
		now := sh.Shortened()
		shortened, s.shortened = now-s.shortened, now
	}
	if err != nil {
		return false, shortened, asError(op, ReasonWriteFailed, err)
	}
	for i := range records {
		if records[i].Severity == Critical {
			if err := s.sink.Flush(ctx); err != nil {
				return false, shortened, asError(op, ReasonFlushFailed, err)
			}
			return true, shortened, nil
		}
	}
	return false, shortened, nil
}

func (s *server) Flush(ctx context.Context, _ *auditv1.FlushRequest) (*auditv1.FlushResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ready("flush"); err != nil {
		return nil, err.toStatus()
	}
	if err := s.sink.Flush(ctx); err != nil {
		return nil, asError("flush", ReasonFlushFailed, err).toStatus()
	}
	return &auditv1.FlushResponse{}, nil
}

func (s *server) Reopen(ctx context.Context, _ *auditv1.ReopenRequest) (*auditv1.ReopenResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ready("reopen"); err != nil {
		return nil, err.toStatus()
	}
	if r, ok := s.sink.(Reopener); ok {
		if err := r.Reopen(ctx); err != nil {
			return nil, asError("reopen", ReasonWriteFailed, err).toStatus()
		}
	}
	return &auditv1.ReopenResponse{}, nil
}

func (s *server) Shutdown(ctx context.Context, _ *auditv1.ShutdownRequest) (*auditv1.ShutdownResponse, error) {
	if err := s.shutdown(ctx, "shutdown RPC"); err != nil {
		return nil, asError("shutdown", ReasonFlushFailed, err).toStatus()
	}
	return &auditv1.ShutdownResponse{}, nil
}

// shutdown is the one way a sink is closed, whoever asks (the RPC, SIGTERM,
// the parent's death, the end of Serve): flush, then close even if the
// flush failed. Later calls return the first call's result.
func (s *server) shutdown(ctx context.Context, why string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutDown {
		return s.shutErr
	}
	s.shutDown = true
	if s.stopTicker != nil {
		close(s.stopTicker)
	}
	if !s.configured {
		s.logger.Debug("sink shut down before it was configured", "why", why)
		return nil
	}
	var errs []error
	if err := s.sink.Flush(ctx); err != nil {
		errs = append(errs, fmt.Errorf("flush: %w", err))
	}
	if err := s.sink.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("close: %w", err))
	}
	s.shutErr = errors.Join(errs...)
	if s.shutErr != nil {
		s.logger.Error("sink shutdown failed", "why", why, "error", s.shutErr)
	} else {
		s.logger.Info("sink flushed and closed", "why", why)
	}
	return s.shutErr
}
