package vram

import (
	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/vramward/vramward/sdk/handshake"
	"github.com/vramward/vramward/sdk/internal/serving"
	vramv1 "github.com/vramward/vramward/sdk/proto/vram/v1"
)

// GRPCPlugin is the go-plugin glue for the VramBackend service: the plugin
// process holds the server half, the host the client half; an in-process
// test holds both (WithClient). Close closes the served backend.
type GRPCPlugin = serving.Plugin

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

const service = "VramBackend"

func dial(logger hclog.Logger) func(*grpc.ClientConn) any {
	return func(c *grpc.ClientConn) any { return NewClient(vramv1.NewVramBackendClient(c), logger) }
}

// PluginForBackend serves b.
func PluginForBackend(b Backend, logger hclog.Logger) *GRPCPlugin {
	srv := newServer(b, logger)
	return serving.Served(service, func(s *grpc.Server) { vramv1.RegisterVramBackendServer(s, srv) }, dial(logger), srv.close)
}

// PluginForHost dispenses a *Client.
func PluginForHost(logger hclog.Logger) *GRPCPlugin { return serving.ForHost(service, dial(logger)) }

// NewLogger is the logger a backend plugin should use (JSON on stderr).
func NewLogger(name string) hclog.Logger { return serving.NewLogger(name) }

// Serve runs b as a plugin process until the host is done with it. However
// the process ends (the host closing it, SIGTERM, the host dying), the
// backend is closed once, so device memory is freed.
func Serve(b Backend) {
	logger := NewLogger(b.Info().Name)
	serving.ServeClosing(handshake.KindVramBackend, PluginForBackend(b, logger), logger)
}
