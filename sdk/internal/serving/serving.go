// Package serving holds what every plugin process does the same way,
// whatever its kind: log JSON lines to stderr for the host to forward, and
// end through one final function whichever way the process is asked to end.
package serving

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/vramward/vramward/sdk/sandbox"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/vramward/vramward/sdk/handshake"
	"github.com/vramward/vramward/sdk/internal/parentwatch"
)

// Serve serves p as the plugin of kind until the host is done with it,
// with final run once whichever way the process ends (the host closing
// the plugin, SIGTERM, the host dying). server may add gRPC options; nil
// keeps go-plugin's.
func Serve(kind string, p plugin.Plugin, final func(why string), logger hclog.Logger, server func([]grpc.ServerOption) *grpc.Server) {
	// A process of its own: Configure may restrict it (sdk/sandbox).
	sandbox.EnableForThisProcess()
	OnEnd(final, logger)
	if server == nil {
		server = plugin.DefaultGRPCServer
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  handshake.Config,
		VersionedPlugins: map[int]plugin.PluginSet{handshake.ProtocolVersion: {kind: p}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return server(append(opts, grpc.InitialWindowSize(handshake.WindowBytes), grpc.InitialConnWindowSize(handshake.WindowBytes)))
		},
		Logger: logger,
	})
	final("plugin server stopped")
}

// NewLogger is a plugin's logger: JSON lines on stderr, which the host
// forwards into its own log under the plugin's name. Its level comes from
// VRAMWARD_PLUGIN_LOG_LEVEL (default info).
func NewLogger(name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      hclog.LevelFromString(os.Getenv("VRAMWARD_PLUGIN_LOG_LEVEL")),
		Output:     os.Stderr,
		JSONFormat: true,
	})
}

// OnEnd runs final and exits when the process gets SIGTERM or the host
// process dies. go-plugin ignores SIGINT (the host's terminal sends it to
// the whole group; the host decides) and leaves SIGTERM at its default,
// which would skip final; and it leaves orphans when the host is killed.
// Once the host is gone, a log line to its stderr pipe must fail with
// EPIPE, not kill the process with SIGPIPE before final ran.
func OnEnd(final func(why string), logger hclog.Logger) {
	signal.Ignore(syscall.SIGPIPE)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	go func() {
		<-sigs
		final("SIGTERM")
		os.Exit(0)
	}()
	parentwatch.OnExit(func() {
		final("host process exited")
		os.Exit(0)
	}, logger)
}

// Glue is the go-plugin glue of one gRPC service: Register serves the
// plugin's half, Dial makes the host's. A plugin process sets Register, the
// host Dial, an in-process test both.
type Glue struct {
	plugin.NetRPCUnsupportedPlugin
	Service  string // named in errors
	Register func(*grpc.Server)
	Dial     func(*grpc.ClientConn) any
}

func (g *Glue) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if g.Register == nil {
		return fmt.Errorf("%s plugin: nothing to serve", g.Service)
	}
	g.Register(s)
	return nil
}

func (g *Glue) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	if g.Dial == nil {
		return nil, fmt.Errorf("%s plugin: not a host-side plugin", g.Service)
	}
	return g.Dial(conn), nil
}

// Plugin is Glue for a kind whose served half must be closed once: a
// loader or a VRAM backend (the audit sink's Shutdown RPC does more).
type Plugin struct {
	Glue
	dial  func(*grpc.ClientConn) any
	close func() error
}

// Served is the plugin process's half: register serves the service, close
// ends what it serves. dial is kept for WithClient.
func Served(service string, register func(*grpc.Server), dial func(*grpc.ClientConn) any, close func() error) *Plugin {
	return &Plugin{Glue: Glue{Service: service, Register: register}, dial: dial, close: close}
}

// ForHost is the host's half alone.
func ForHost(service string, dial func(*grpc.ClientConn) any) *Plugin {
	return (&Plugin{Glue: Glue{Service: service}, dial: dial}).WithClient()
}

// WithClient adds the host half, for in-process tests.
func (p *Plugin) WithClient() *Plugin {
	p.Dial = p.dial
	return p
}

// Close closes the served half (in-process tests; ServeClosing does it
// itself); the host's half has nothing to close.
func (p *Plugin) Close() error {
	if p.close == nil {
		return nil
	}
	return p.close()
}

// ServeClosing serves p as the plugin process of kind and closes it once,
// whichever way the process ends.
func ServeClosing(kind string, p *Plugin, logger hclog.Logger) {
	final := func(why string) {
		if err := p.Close(); err != nil {
			logger.Error("close failed", "why", why, "error", err)
		}
	}
	Serve(kind, p, final, logger, nil)
}
