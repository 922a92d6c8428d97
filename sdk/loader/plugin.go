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
// test holds both (WithClient). Close closes the served loader.
type GRPCPlugin = serving.Plugin

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

const service = "ModelLoader"

func dial(logger hclog.Logger) func(*grpc.ClientConn) any {
	return func(c *grpc.ClientConn) any { return NewClient(loaderv1.NewModelLoaderClient(c), logger) }
}

// PluginForLoader serves l.
func PluginForLoader(l Loader, logger hclog.Logger) *GRPCPlugin {
	srv := newServer(l, logger)
	return serving.Served(service, func(s *grpc.Server) { loaderv1.RegisterModelLoaderServer(s, srv) }, dial(logger), srv.close)
}

// PluginForHost dispenses a *Client.
func PluginForHost(logger hclog.Logger) *GRPCPlugin { return serving.ForHost(service, dial(logger)) }

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
	serving.ServeClosing(handshake.KindModelLoader, PluginForLoader(l, logger), logger)
}
