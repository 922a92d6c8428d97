package sinkclient_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audit/sinkclient"
	"github.com/vramward/vramward/sdk/audittest"
	"github.com/vramward/vramward/sdk/handshake"
	"github.com/vramward/vramward/sdk/internal/auditglue"
	"github.com/vramward/vramward/sdk/plugintest"
	"github.com/vramward/vramward/sdk/schema"
)

// gateSink holds each write until the test lets it through, and fails the
// writes it is told to.
type gateSink struct {
	mu      sync.Mutex
	gate    chan struct{}
	failing bool
	written []uint64
}

func (g *gateSink) Info() audit.SinkInfo {
	return audit.SinkInfo{Name: "gate", Version: "test", Schema: schema.Schema{}}
}
func (g *gateSink) Configure(context.Context, schema.Values) error { return nil }
func (g *gateSink) Write(ctx context.Context, records []audit.Record) error {
	<-g.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.failing {
		return errors.New("disk on fire")
	}
	for _, r := range records {
		g.written = append(g.written, r.Seq)
	}
	return nil
}
func (g *gateSink) Flush(context.Context) error { return nil }
func (g *gateSink) Close(context.Context) error { return nil }

func gateClient(t *testing.T, g *gateSink) *sinkclient.Client {
	m, err := sinkclient.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	server, err := auditglue.ServerPlugin(g, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	p := auditglue.Pair(server, sinkclient.Plugin(sinkclient.Options{Sink: "gate", Metrics: m}))
	c := plugintest.InProcess(t, handshake.KindAuditSink, p).(*sinkclient.Client)
	if err := c.Configure(context.Background(), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	return c
}

// Single emits share one stream; a deadline that ends one emit, or a sink
// failure that ends the stream, leaves the next emit working, and no emit
// ever takes another's answer.
func TestEmitStreamSurvivesTimeoutsAndFailures(t *testing.T) {
	g := &gateSink{gate: make(chan struct{}, 100)}
	c := gateClient(t, g)
	evs := audittest.Events(6)

	g.gate <- struct{}{}
	if err := c.Emit(context.Background(), evs[0]); err != nil {
		t.Fatal(err)
	}
	// No write is let through: the emit ends at its deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	err := c.Emit(ctx, evs[1])
	cancel()
	if err == nil {
		t.Fatal("an emit the sink never answered succeeded")
	}
	g.gate <- struct{}{} // the abandoned write may now finish
	g.gate <- struct{}{}
	if err := c.Emit(context.Background(), evs[2]); err != nil {
		t.Fatalf("emit after a timed-out one: %v", err)
	}
	g.mu.Lock()
	g.failing = true
	g.mu.Unlock()
	g.gate <- struct{}{}
	var se *audit.Error
	if err := c.Emit(context.Background(), evs[3]); !errors.As(err, &se) || se.Reason != audit.ReasonWriteFailed {
		t.Fatalf("want WRITE_FAILED, got %v", err)
	}
	g.mu.Lock()
	g.failing = false
	g.mu.Unlock()
	g.gate <- struct{}{}
	if err := c.Emit(context.Background(), evs[4]); err != nil {
		t.Fatalf("emit after a failed one: %v", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	last := g.written[len(g.written)-1]
	if g.written[0] != evs[0].Seq || last != evs[4].Seq {
		t.Fatalf("written %v", g.written)
	}
}
