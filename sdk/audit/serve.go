package audit

import (
	"context"
	"os"
	"runtime/debug"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/vramward/vramward/sdk/handshake"
	"github.com/vramward/vramward/sdk/internal/serving"
)

// MaxMessageBytes is the largest RPC message a sink accepts; the host's
// client splits batches to stay under it.
const MaxMessageBytes = 16 << 20

// shutdownGrace bounds the final flush and close when the host is gone or
// has sent SIGTERM and nobody waits for an answer.
const shutdownGrace = 10 * time.Second

// NewLogger is the logger a plugin should use: JSON lines on stderr, which
// the host forwards into its own log under the plugin's name. Its level comes
// from VRAMWARD_PLUGIN_LOG_LEVEL (default info).
func NewLogger(name string) hclog.Logger { return serving.NewLogger(name) }

// ServeOption changes how Serve runs the plugin process.
type ServeOption func(*serveOptions)

type serveOptions struct{ batchGC bool }

// WithBatchGC tunes the garbage collector for a sink whose live heap is a
// few batches and almost all of whose allocations are garbage one batch
// later: the collector runs a quarter as often (GOGC=400; about 12 % less
// CPU an event in the file sink's benchmark), with a soft limit of 256 MiB
// that brings it back before the heap grows large. An operator's GOGC or
// GOMEMLIMIT wins. Without it, the process keeps Go's defaults.
func WithBatchGC() ServeOption { return func(o *serveOptions) { o.batchGC = true } }

func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(256 << 20)
	}
}

// Serve runs sink as a plugin process and returns when the host is done with
// it. Call it from main and return. Whichever way the process is asked to end
// (the Shutdown RPC, the host closing the plugin, SIGTERM, the host process
// dying), the sink is flushed and closed exactly once first.
//
// Never write to stdout: go-plugin reads it for the handshake. Log through
// NewLogger instead.
func Serve(sink Sink, opts ...ServeOption) {
	var o serveOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.batchGC {
		tuneGC()
	}
	logger := NewLogger(sink.Info().Name)
	p := &serverPlugin{srv: newServer(sink, logger)}
	srv := p.srv
	if srv.lane = openLane(logger); srv.lane != nil {
		go srv.serveLane(srv.lane)
	}

	final := func(why string) {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		if err := srv.shutdown(ctx, why); err != nil {
			logger.Error("final shutdown failed", "why", why, "error", err)
		}
	}

	// When the host closed the plugin (go-plugin's Kill), with or without
	// a Shutdown RPC first, the final shutdown closes the sink either way.
	serving.Serve(handshake.KindAuditSink, p, final, logger, func(opts []grpc.ServerOption) *grpc.Server {
		return grpc.NewServer(append(opts, grpc.MaxRecvMsgSize(MaxMessageBytes))...)
	})
}
