package loader

import (
	"context"
	"fmt"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/vramward/vramward/sdk/handshake"
	"github.com/vramward/vramward/sdk/internal/serving"
	loaderv1 "github.com/vramward/vramward/sdk/proto/loader/v1"
)

// GRPCPlugin is the go-plugin glue for the ModelLoader service: the plugin
// process holds the server half (PluginForLoader), the host the client half
// (PluginForHost); an in-process test holds both.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	srv    *server
	client bool
	log    hclog.Logger
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// PluginForLoader serves l.
func PluginForLoader(l Loader, logger hclog.Logger) *GRPCPlugin {
	return &GRPCPlugin{srv: newServer(l, logger), log: logger}
}

// PluginForHost dispenses a *Client.
func PluginForHost(logger hclog.Logger) *GRPCPlugin {
	return &GRPCPlugin{client: true, log: logger}
}

// WithClient adds the host half to a server-side plugin, for in-process tests.
func (p *GRPCPlugin) WithClient() *GRPCPlugin { p.client = true; return p }

// Close closes the served loader (in-process tests; Serve does it itself).
func (p *GRPCPlugin) Close() error {
	if p.srv == nil {
		return nil
	}
	return p.srv.close()
}

func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if p.srv == nil {
		return fmt.Errorf("loader plugin: no loader to serve")
	}
	loaderv1.RegisterModelLoaderServer(s, p.srv)
	return nil
}

func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	if !p.client {
		return nil, fmt.Errorf("loader plugin: not a host-side plugin")
	}
	return NewClient(loaderv1.NewModelLoaderClient(conn), p.log), nil
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
