package vram

import (
	"context"
	"fmt"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/vramward/vramward/sdk/handshake"
	"github.com/vramward/vramward/sdk/internal/serving"
	vramv1 "github.com/vramward/vramward/sdk/proto/vram/v1"
)

// GRPCPlugin is the go-plugin glue for the VramBackend service.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	srv    *server
	client bool
	log    hclog.Logger
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// PluginForBackend serves b.
func PluginForBackend(b Backend, logger hclog.Logger) *GRPCPlugin {
	return &GRPCPlugin{srv: newServer(b, logger), log: logger}
}

// PluginForHost dispenses a *Client.
func PluginForHost(logger hclog.Logger) *GRPCPlugin { return &GRPCPlugin{client: true, log: logger} }

// WithClient adds the host half, for in-process tests.
func (p *GRPCPlugin) WithClient() *GRPCPlugin { p.client = true; return p }

// Close closes the served backend (in-process tests; Serve does it itself).
func (p *GRPCPlugin) Close() error {
	if p.srv == nil {
		return nil
	}
	return p.srv.close()
}

func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if p.srv == nil {
		return fmt.Errorf("vram plugin: no backend to serve")
	}
	vramv1.RegisterVramBackendServer(s, p.srv)
	return nil
}

func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	if !p.client {
		return nil, fmt.Errorf("vram plugin: not a host-side plugin")
	}
	return NewClient(vramv1.NewVramBackendClient(conn), p.log), nil
}

// NewLogger is the logger a backend plugin should use (JSON on stderr).
func NewLogger(name string) hclog.Logger { return serving.NewLogger(name) }

// Serve runs b as a plugin process until the host is done with it. However
// the process ends (the host closing it, SIGTERM, the host dying), the
// backend is closed once, so device memory is freed.
func Serve(b Backend) {
	logger := NewLogger(b.Info().Name)
	p := PluginForBackend(b, logger)
	final := func(why string) {
		if err := p.srv.close(); err != nil {
			logger.Error("close failed", "why", why, "error", err)
		}
	}
	serving.Serve(handshake.KindVramBackend, p, final, logger, nil)
}
