package sinkclient_test

import (
	"context"
	"errors"
	"io"
	"testing"

	plugin "github.com/hashicorp/go-plugin"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audit/sinkclient"
	"github.com/vramward/vramward/sdk/audittest"
	"github.com/vramward/vramward/sdk/handshake"
	"github.com/vramward/vramward/sdk/plugintest"
	auditv1 "github.com/vramward/vramward/sdk/proto/audit/v1"
)

// liar is a sink server that acknowledges every emit without saying it
// is durable: what a plugin that skips the SDK's Serve (or a buggy one)
// could answer.
type liar struct {
	auditv1.UnimplementedAuditSinkServer
}

func (liar) Configure(context.Context, *auditv1.ConfigureRequest) (*auditv1.ConfigureResponse, error) {
	return &auditv1.ConfigureResponse{}, nil
}

func (liar) EmitBatch(context.Context, *auditv1.EmitBatchRequest) (*auditv1.EmitBatchResponse, error) {
	return &auditv1.EmitBatchResponse{Durable: false}, nil
}

func (liar) EmitStream(s auditv1.AuditSink_EmitStreamServer) error {
	for {
		if _, err := s.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := s.Send(&auditv1.EmitBatchResponse{Durable: false}); err != nil {
			return err
		}
	}
}

type liarPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	host plugin.GRPCPlugin
}

func (p liarPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	auditv1.RegisterAuditSinkServer(s, liar{})
	return nil
}

func (p liarPlugin) GRPCClient(ctx context.Context, b *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return p.host.GRPCClient(ctx, b, c)
}

// TestClientRefusesCriticalAckWithoutDurable: a sink that acknowledges a
// CRITICAL event without saying it flushed it has not made it durable. On
// each of the client's three paths (a single emit on the long-lived stream,
// a one-RPC batch, a batch streamed in several messages) the emit fails
// with NOT_DURABLE and counts one CRITICAL failure; non-CRITICAL events
// need no flush and pass.
func TestClientRefusesCriticalAckWithoutDurable(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := sinkclient.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	host := sinkclient.Plugin(sinkclient.Options{Sink: "liar", Metrics: m, MaxBatchEvents: 4})
	c := plugintest.InProcess(t, handshake.KindAuditSink, liarPlugin{host: host.(plugin.GRPCPlugin)}).(*sinkclient.Client)
	ctx := context.Background()

	crit := func() audit.Event {
		e, err := audit.New(audit.IntegrityViolation, audit.Actor{}, audit.Str("resource_type", "model"), audit.Str("resource_id", "m"),
			audit.Str("expected_hash", "a"), audit.Str("actual_hash", "b"), audit.Str("action_taken", "rejected"))
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	inf := func() audit.Event {
		e, err := audit.New(audit.SealVerified, audit.Actor{}, audit.Str("shard_id", "s"), audit.Uint("gpu_device", 0))
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	if err := c.Emit(ctx, inf()); err != nil {
		t.Fatalf("an INFO emit needs no flush: %v", err)
	}
	paths := map[string]func() error{
		"single emit (stream)": func() error { return c.Emit(ctx, crit()) },
		"batch (one RPC)":      func() error { return c.EmitBatch(ctx, []audit.Event{inf(), crit()}) },
		"batch (streamed)": func() error {
			return c.EmitBatch(ctx, []audit.Event{inf(), inf(), inf(), inf(), inf(), crit(), inf(), inf(), inf()})
		},
	}
	want := 0.0
	for name, emit := range paths {
		err := emit()
		var se *audit.Error
		if !errors.As(err, &se) || se.Reason != audit.ReasonNotDurable {
			t.Errorf("%s: a CRITICAL ack without durable returned %v", name, err)
		}
		want++
		if got := audittest.MetricSum(t, reg, "vramward_audit_critical_emit_failures_total"); got != want {
			t.Errorf("%s: critical_emit_failures_total = %v, want %v", name, got, want)
		}
	}
}
