package audit

import (
	"context"
	"fmt"
	"io"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/vramward/vramward/sdk/internal/auditglue"
	auditv1 "github.com/vramward/vramward/sdk/proto/audit/v1"
)

// serverPlugin is the plugin half of the go-plugin glue for the AuditSink
// service; the host half is package sinkclient's.
type serverPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	srv *server
}

func (p *serverPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	auditv1.RegisterAuditSinkServer(s, p.srv)
	return nil
}

func (p *serverPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, fmt.Errorf("audit: the plugin half dispenses no client")
}

func init() {
	auditglue.ServerPlugin = func(sink any, logger hclog.Logger) (plugin.Plugin, error) {
		s, ok := sink.(Sink)
		if !ok {
			return nil, fmt.Errorf("audit: %T is not a Sink", sink)
		}
		return &serverPlugin{srv: newServer(s, logger)}, nil
	}
	auditglue.ServeLane = func(p plugin.Plugin, conn io.ReadWriteCloser) {
		srv := p.(*serverPlugin).srv
		srv.mu.Lock()
		srv.lane = conn
		srv.mu.Unlock()
		go srv.serveLane(conn)
	}
}
