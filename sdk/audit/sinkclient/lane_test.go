package sinkclient_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audit/sinkclient"
	"github.com/vramward/vramward/sdk/audittest"
	"github.com/vramward/vramward/sdk/handshake"
	"github.com/vramward/vramward/sdk/internal/auditglue"
	"github.com/vramward/vramward/sdk/internal/lane"
	"github.com/vramward/vramward/sdk/plugintest"
)

// socketPair is what the host's launcher makes for a sink.
// The plugin's end is taken over as a plugin process takes it.
func socketPair(t *testing.T) (host net.Conn, plugin io.ReadWriteCloser) {
	t.Helper()
	host, f, err := lane.Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	if plugin, err = lane.PluginEnd(fd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Close(); plugin.Close() })
	return host, plugin
}

// laneClient is gateClient with a record lane: the server half serves
// served, and the client is given hostEnd.
func laneClient(t *testing.T, g *gateSink, hostEnd net.Conn, served io.ReadWriteCloser) *sinkclient.Client {
	t.Helper()
	m, err := sinkclient.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	server, err := auditglue.ServerPlugin(g, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	auditglue.ServeLane(server, served)
	p := auditglue.Pair(server, sinkclient.Plugin(sinkclient.Options{Sink: "gate", Metrics: m}))
	c := plugintest.InProcess(t, handshake.KindAuditSink, p).(*sinkclient.Client)
	c.AttachLane(hostEnd)
	if c.Lane() {
		t.Fatal("the client used the lane before Configure said the plugin serves it")
	}
	if err := c.Configure(context.Background(), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	return c
}

// One-message emits travel on the lane, and a sink's failure comes back
// exactly as typed as over gRPC. An emit the sink does not answer by its
// deadline ends the lane's use, and the next emit goes over gRPC, in order.
func TestTheLaneCarriesEmitsAndTypedErrors(t *testing.T) {
	g := &gateSink{gate: make(chan struct{}, 100)}
	host, plugin := socketPair(t)
	c := laneClient(t, g, host, plugin)
	if !c.Lane() {
		t.Fatal("the plugin serves the lane, but the client does not use it")
	}
	evs := audittest.Events(len(audit.Catalogue()))
	for i := range evs {
		if evs[i].Severity == audit.Critical {
			evs[0], evs[i] = evs[i], evs[0]
			break
		}
	}
	if evs[0].Severity != audit.Critical {
		t.Fatal("the catalogue has no CRITICAL event")
	}
	g.gate <- struct{}{}
	if err := c.Emit(context.Background(), evs[0]); err != nil {
		t.Fatal(err)
	}

	// The same failure over gRPC, for the comparison.
	overGRPC := &gateSink{gate: make(chan struct{}, 1), failing: true}
	overGRPC.gate <- struct{}{}
	var want *audit.Error
	if err := gateClient(t, overGRPC).Emit(context.Background(), evs[1]); !errors.As(err, &want) {
		t.Fatalf("over gRPC: %v", err)
	}
	g.mu.Lock()
	g.failing = true
	g.mu.Unlock()
	g.gate <- struct{}{}
	var got *audit.Error
	if err := c.Emit(context.Background(), evs[1]); !errors.As(err, &got) {
		t.Fatalf("over the lane: %v", err)
	}
	if got.Reason != want.Reason || got.Msg != want.Msg || got.Op != want.Op || got.Errno != want.Errno || got.Written != want.Written {
		t.Fatalf("the lane's error %+v differs from gRPC's %+v", got, want)
	}
	if !c.Lane() {
		t.Fatal("a sink's failure ended the lane")
	}
	g.mu.Lock()
	g.failing = false
	g.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	asked := make(chan time.Duration, 1)
	go func() {
		time.Sleep(20 * time.Millisecond) // the emit below is in flight
		t0 := time.Now()
		c.Lane()
		asked <- time.Since(t0)
	}()
	err := c.Emit(ctx, evs[2])
	cancel()
	if d := <-asked; d > 50*time.Millisecond {
		t.Fatalf("asking whether the lane is used waited %s for the emit in flight", d)
	}
	if err == nil {
		t.Fatal("an emit the sink never answered succeeded")
	}
	if c.Lane() {
		t.Fatal("the lane is still used after an emit it did not answer")
	}
	g.gate <- struct{}{} // the abandoned write finishes
	g.gate <- struct{}{}
	if err := c.Emit(context.Background(), evs[3]); err != nil {
		t.Fatalf("the emit after the lane ended: %v", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if want := []uint64{evs[0].Seq, evs[2].Seq, evs[3].Seq}; len(g.written) != 3 || g.written[0] != want[0] || g.written[2] != want[2] {
		t.Fatalf("the sink holds %v, want %v", g.written, want)
	}
}

// A hostile or broken plugin end of the lane gets no answer of its taken
// for another request's, costs the host one failed emit (typed
// UNAVAILABLE, as a broken gRPC stream is), and the emits after it go
// over gRPC.
func TestAHostileLaneCostsOneEmitThenGRPCCarriesOn(t *testing.T) {
	answer := func(id uint64, kind byte, payload []byte) []byte { return lane.Append(nil, id, kind, payload) }
	for _, tc := range []struct {
		name  string
		reply func(req lane.Frame) []byte
	}{
		{"another request's id", func(r lane.Frame) []byte { return answer(r.ID+1, lane.Response, nil) }},
		{"a request back", func(r lane.Frame) []byte { return answer(r.ID, lane.Request, nil) }},
		{"an unknown kind", func(r lane.Frame) []byte { return answer(r.ID, 9, nil) }},
		{"a frame over the limit", func(r lane.Frame) []byte {
			h := binary.BigEndian.AppendUint32(nil, 1<<31)
			return append(binary.BigEndian.AppendUint64(h, r.ID), lane.Response)
		}},
		{"an unreadable answer", func(r lane.Frame) []byte { return answer(r.ID, lane.Response, []byte{0xff, 0xff}) }},
		{"a failure with code OK", func(r lane.Frame) []byte { return answer(r.ID, lane.Status, nil) }},
		{"no answer, the lane closed", func(lane.Frame) []byte { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &gateSink{gate: make(chan struct{}, 10)}
			host, hostile := socketPair(t)
			_, served := socketPair(t)
			c := laneClient(t, g, host, served)
			go func() {
				f, err := lane.NewReader(hostile, 1<<20).Read()
				if err != nil {
					return
				}
				if b := tc.reply(f); b != nil {
					_, _ = hostile.Write(b)
				} else {
					hostile.Close()
				}
			}()
			evs := audittest.Events(2)
			var se *audit.Error
			if err := c.Emit(plugintest.Context(t), evs[0]); !errors.As(err, &se) || se.Reason != audit.ReasonUnavailable {
				t.Fatalf("got %v, want UNAVAILABLE", err)
			}
			if c.Lane() {
				t.Fatal("the client still uses a lane that broke the protocol")
			}
			g.gate <- struct{}{}
			if err := c.Emit(plugintest.Context(t), evs[1]); err != nil {
				t.Fatalf("the next emit, over gRPC: %v", err)
			}
			g.mu.Lock()
			defer g.mu.Unlock()
			if len(g.written) != 1 || g.written[0] != evs[1].Seq {
				t.Fatalf("the sink holds %v, want [%d]", g.written, evs[1].Seq)
			}
		})
	}
}
