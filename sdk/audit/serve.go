package audit

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/vramward/vramward/sdk/handshake"
	"github.com/vramward/vramward/sdk/internal/parentwatch"
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
func NewLogger(name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      hclog.LevelFromString(os.Getenv("VRAMWARD_PLUGIN_LOG_LEVEL")),
		Output:     os.Stderr,
		JSONFormat: true,
	})
}

// Serve runs sink as a plugin process and returns when the host is done with
// it. Call it from main and return. Whichever way the process is asked to end
// (the Shutdown RPC, the host closing the plugin, SIGTERM, the host process
// dying), the sink is flushed and closed exactly once first.
//
// Never write to stdout: go-plugin reads it for the handshake. Log through
// NewLogger instead.
func Serve(sink Sink) {
	logger := NewLogger(sink.Info().Name)
	p := PluginForSink(sink, logger)
	srv := p.srv

	final := func(why string) {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		if err := srv.shutdown(ctx, why); err != nil {
			logger.Error("final shutdown failed", "why", why, "error", err)
		}
	}

	// go-plugin ignores SIGINT (the host's terminal sends it to the whole
	// group; the host decides) and leaves SIGTERM at its default, which
	// would drop what the sink holds.
	// Once the host is gone, a log line to its stderr pipe must fail with
	// EPIPE, not kill the process with SIGPIPE before the sink is flushed.
	signal.Ignore(syscall.SIGPIPE)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	go func() {
		<-sigs
		final("SIGTERM")
		os.Exit(0)
	}()
	// go-plugin leaves orphans when the host is killed; flush and go.
	parentwatch.OnExit(func() {
		final("host process exited")
		os.Exit(0)
	}, logger)

	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  handshake.Config,
		VersionedPlugins: map[int]plugin.PluginSet{handshake.ProtocolVersion: {handshake.KindAuditSink: p}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, grpc.MaxRecvMsgSize(MaxMessageBytes))...)
		},
		Logger: logger,
	})
	// The host closed the plugin (go-plugin's Kill) with or without a
	// Shutdown RPC first; make sure the sink is closed either way.
	final("plugin server stopped")
}
