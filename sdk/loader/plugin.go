package loader

import (
	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/vramward/vramward/sdk/handshake"
	"github.com/vramward/vramward/sdk/internal/serving"
	loaderv1 "github.com/vramward/vramward/sdk/proto/loader/v1"
)

// GRPCPlugin is the go-plugin glue for the ModelLoader service: the plugin
// process holds the server half, the host the client half; an in-process
// test holds both.
type GRPCPlugin struct {
	serving.Glue
	srv *server
	log hclog.Logger
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// PluginForLoader serves l.
func PluginForLoader(l Loader, logger hclog.Logger) *GRPCPlugin {
	srv := newServer(l, logger)
	p := &GRPCPlugin{srv: srv, log: logger}
	p.Service, p.Register = "ModelLoader", func(s *grpc.Server) { loaderv1.RegisterModelLoaderServer(s, srv) }
	return p
}

// PluginForHost dispenses a *Client.
func PluginForHost(logger hclog.Logger) *GRPCPlugin {
	return (&GRPCPlugin{log: logger}).WithClient()
}

// WithClient adds the host half, for in-process tests.
func (p *GRPCPlugin) WithClient() *GRPCPlugin {
	p.Service = "ModelLoader"
	p.Dial = func(c *grpc.ClientConn) any { return NewClient(loaderv1.NewModelLoaderClient(c), p.log) }
	return p
}

// Close closes the served loader (in-process tests; Serve does it itself).
func (p *GRPCPlugin) Close() error {
	if p.srv == nil {
		return nil
	}
	return p.srv.close()
}

// NewLogger is the logger a loader plugin should use: JSON lines on stderr,
// forwarded by the host under the plugin's name; level from
// VRAMWARD_PLUGIN_LOG_LEVEL.
func NewLogger(name string) hclog.Logger { return serving.NewLogger(name) }

// Serve runs l as a plugin process until the host is done with it. Call it
// from main and return. A loader holds no data to flush, but it is closed
// once whichever way the process ends (the host closing the plugin,
// SIGTERM, the host dying), and never outlives the host.
func Serve(l Loader) {
	logger := NewLogger(l.Info().Name)
	p := PluginForLoader(l, logger)
	final := func(why string) {
		if err := p.srv.close(); err != nil {
			logger.Error("close failed", "why", why, "error", err)
		}
	}
	serving.Serve(handshake.KindModelLoader, p, final, logger, nil)
}
