package audit

import (
	"context"
	"fmt"
	"time"

	"github.com/vramward/vramward/sdk/schema"
)

// Sink is what an audit-sink plugin implements; Serve does the rest. The SDK
// never calls a Sink's methods concurrently, so a Sink needs no locking of
// its own for them.
type Sink interface {
	// Info names the sink and publishes its configuration schema. It is
	// called before Configure and must not depend on it.
	Info() SinkInfo

	// Configure is called once, before any Write, with the sink's config
	// block already checked against Info().Schema and defaults applied. A
	// problem with one attribute is returned as *schema.FieldError (or
	// schema.Errors) so the host can point at it in the config file.
	Configure(ctx context.Context, cfg schema.Values) error

	// Write accepts records in order, all or none, except that a sink that
	// delivered a prefix before failing (a transport that broke mid-batch)
	// returns *PartialWriteError saying how many: the host then keeps only
	// the rest, so a restart cannot send that prefix twice. A sink that
	// stores JSON writes each record's Line, the exact bytes the host made;
	// one that maps fields reads its Event. When Write
	// returns nil the records must survive a crash of this process (written
	// to the kernel or to the transport); they need not be durable yet. A
	// record whose seq the sink already holds with the same chain hash is a
	// re-send after a restart and is skipped, not written twice.
	Write(ctx context.Context, records []Record) error

	// Flush makes everything accepted so far durable: fsync for a file,
	// every buffered byte written for a socket. Serve calls it after every
	// batch holding a CRITICAL event and answers the host only when it
	// returned nil.
	Flush(ctx context.Context) error

	// Close releases the sink. Serve calls it exactly once, after a final
	// Flush, on the Shutdown RPC or on any other way out of the process.
	Close(ctx context.Context) error
}

// Record is one event as the host sent it to a sink: the event, parsed and
// validated by the SDK (its fields promoted: r.Seq, r.Chain.Hash), and its
// record line, the one encoding of the event (the bytes the chain covers,
// and the bytes a sink stores). They are two views of the same record;
// changing a copy of the Event changes no Line. Records are read-only and
// share their batch's buffers, so a sink copies what it keeps after Write
// returns.
type Record struct {
	Event
	// Line is the record without its newline.
	Line []byte
}

// SinkInfo describes a sink.
type SinkInfo struct {
	Name    string
	Version string
	Schema  schema.Schema
}

// Reopener is implemented by sinks whose outputs can be reopened after an
// external rotation (logrotate's move-then-signal).
type Reopener interface {
	Reopen(ctx context.Context) error
}

// PeriodicFlusher is implemented by sinks that want Flush called on a timer
// as well; Serve asks once, after Configure. Zero or less means never.
type PeriodicFlusher interface {
	FlushInterval() time.Duration
}

// Shortener is implemented by sinks whose output has a size limit and that
// store an event that does not fit in a shortened form (saying so in the
// stored record) rather than refuse it. Shortened is the running count of
// such events; Serve reports each Write's share to the host, which counts
// it in vramward_audit_shortened_events_total.
type Shortener interface {
	Shortened() uint64
}

// PartialWriteError is a Write that failed after its first Written events
// were stored as durably as a Flush would make them (for a transport: on
// the socket, or acknowledged by the receiver). The host takes those as
// delivered and re-sends only the rest.
type PartialWriteError struct {
	Written int
	Err     error
}

func (e *PartialWriteError) Error() string {
	return fmt.Sprintf("%d events written, then: %v", e.Written, e.Err)
}

func (e *PartialWriteError) Unwrap() error { return e.Err }
