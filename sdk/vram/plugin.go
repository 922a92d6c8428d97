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
// test holds both.
type GRPCPlugin struct {
	serving.Glue
	srv *server
	log hclog.Logger
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// PluginForBackend serves b.
func PluginForBackend(b Backend, logger hclog.Logger) *GRPCPlugin {
	srv := newServer(b, logger)
	p := &GRPCPlugin{srv: srv, log: logger}
	p.Service, p.Register = "VramBackend", func(s *grpc.Server) { vramv1.RegisterVramBackendServer(s, srv) }
	return p
}

// PluginForHost dispenses a *Client.
func PluginForHost(logger hclog.Logger) *GRPCPlugin {
	return (&GRPCPlugin{log: logger}).WithClient()
}

// WithClient adds the host half, for in-process tests.
func (p *GRPCPlugin) WithClient() *GRPCPlugin {
	p.Service = "VramBackend"
	p.Dial = func(c *grpc.ClientConn) any { return NewClient(vramv1.NewVramBackendClient(c), p.log) }
	return p
}

// Close closes the served backend (in-process tests; Serve does it itself).
func (p *GRPCPlugin) Close() error {
	if p.srv == nil {
		return nil
	}
	return p.srv.close()
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
