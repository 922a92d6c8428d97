// Package auditglue hands package audit's server half to the SDK's own
// harness and tests, which serve a Sink in-process, so that package audit
// exports no go-plugin plumbing to sink authors.
package auditglue

import (
	"context"
	"io"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// ServerPlugin serves sink (an audit.Sink) as the AuditSink service. Package
// audit sets it when it is initialised.
var ServerPlugin func(sink any, logger hclog.Logger) (plugin.Plugin, error)

// ServeLane serves the record lane on conn for a server half that
// ServerPlugin made, as a plugin process does on the descriptor the host
// passed; call it before Configure.
var ServeLane func(server plugin.Plugin, conn io.ReadWriteCloser)

// Pair joins a server half and a client half into one plugin, for a test
// that serves and dispenses in one process.
func Pair(server, client plugin.Plugin) plugin.Plugin {
	return pair{server: server.(plugin.GRPCPlugin), client: client.(plugin.GRPCPlugin)}
}

type pair struct {
	plugin.NetRPCUnsupportedPlugin
	server, client plugin.GRPCPlugin
}

func (p pair) GRPCServer(b *plugin.GRPCBroker, s *grpc.Server) error {
	return p.server.GRPCServer(b, s)
}

func (p pair) GRPCClient(ctx context.Context, b *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return p.client.GRPCClient(ctx, b, c)
}
