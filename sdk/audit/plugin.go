package audit

import (
	"context"
	"fmt"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	auditv1 "github.com/vramward/vramward/sdk/proto/audit/v1"
)

// GRPCPlugin is the go-plugin glue for the AuditSink service. A plugin
// process holds the server half (PluginForSink), the host the client half
// (PluginForHost); a test may hold both.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	srv  *server
	opts *ClientOptions
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// PluginForSink serves sink; Serve uses it, and tests that serve a sink
// in-process through plugin.TestPluginGRPCConn.
func PluginForSink(sink Sink, logger hclog.Logger) *GRPCPlugin {
	return &GRPCPlugin{srv: newServer(sink, logger)}
}

// PluginForHost dispenses a *Client bound to one sink name and the host's
// metrics.
func PluginForHost(opts ClientOptions) *GRPCPlugin {
	return &GRPCPlugin{opts: &opts}
}

// WithClient adds the host half to a server-side plugin, for in-process tests.
func (p *GRPCPlugin) WithClient(opts ClientOptions) *GRPCPlugin {
	p.opts = &opts
	return p
}

func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if p.srv == nil {
		return fmt.Errorf("audit plugin: no sink to serve")
	}
	auditv1.RegisterAuditSinkServer(s, p.srv)
	return nil
}

func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	if p.opts == nil {
		return nil, fmt.Errorf("audit plugin: no client options")
	}
	return newClient(*p.opts, auditv1.NewAuditSinkClient(conn))
}
