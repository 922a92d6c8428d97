package sinkclient

import (
	"context"
	"fmt"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	auditv1 "github.com/vramward/vramward/sdk/proto/audit/v1"
)

// hostPlugin is the host half of the go-plugin glue for the AuditSink
// service: it dispenses a *Client.
type hostPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	opts Options
}

// Plugin dispenses a *Client bound to one sink name and the host's metrics.
func Plugin(opts Options) plugin.Plugin { return &hostPlugin{opts: opts} }

func (p *hostPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error {
	return fmt.Errorf("sink client: the host half serves nothing")
}

func (p *hostPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return newClient(p.opts, auditv1.NewAuditSinkClient(conn))
}
