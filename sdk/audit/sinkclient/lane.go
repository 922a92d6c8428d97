package sinkclient

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/vramward/vramward/sdk/internal/lane"
	auditv1 "github.com/vramward/vramward/sdk/proto/audit/v1"
)

// LaneEnv names, in the plugin's environment, the descriptor of its end of
// the record lane (sdk/internal/lane). The host that launches a sink makes
// a socket pair, passes one end at the descriptor it names here, and hands
// the other to the dispensed Client through AttachLane.
func (p *hostPlugin) LaneEnv() string { return lane.EnvFD }

// AttachLane gives the client the host's end of the record lane, before
// Configure. The client uses it only once Configure's answer says that
// the plugin serves it; the launcher, which made it, closes it when the
// plugin ends.
func (c *Client) AttachLane(conn net.Conn) {
	c.smu.Lock()
	defer c.smu.Unlock()
	c.offered = conn
}

// takeLane keeps the offered lane if the plugin serves it.
func (c *Client) takeLane(served bool) {
	c.smu.Lock()
	defer c.smu.Unlock()
	if c.offered == nil {
		return
	}
	if served {
		c.lane = newLaneConn(c.offered)
		c.onLane.Store(true)
	}
	c.offered = nil
}

// Lane says whether one-message emits travel on the record lane. It does
// not wait for an emit in flight (which holds c.smu up to its deadline):
// the status view asks it.
func (c *Client) Lane() bool { return c.onLane.Load() }

// dropLane stops using the lane (c.smu held): the plugin's end reads EOF.
func (c *Client) dropLane() {
	if c.lane != nil {
		c.lane.c.Close()
		c.lane = nil
		c.onLane.Store(false)
	}
}

// maxAnswerBytes bounds a frame the plugin sends: an answer, or a status
// whose text and details the client cuts again when it decodes them.
const maxAnswerBytes = 1 << 20

type laneConn struct {
	c net.Conn
	// answers, when set, is what r reads: c with the thread asleep in the
	// kernel (lane.Answers); otherwise r reads c through the poller.
	answers *lane.Answers
	r       *lane.Reader
	id      uint64
	out     []byte
}

func newLaneConn(c net.Conn) *laneConn {
	l := &laneConn{c: c}
	var src io.Reader = c
	if a, err := lane.NewAnswers(c); err == nil {
		l.answers, src = a, a
	}
	l.r = lane.NewReader(src, maxAnswerBytes)
	return l
}

// roundTrip sends req and reads its answer. A failed emit comes back as
// the gRPC status the plugin sent. Anything else that goes wrong (the
// plugin gone, a frame out of the protocol, the deadline) is broken set:
// the lane's state is unknown, and the client goes on over gRPC.
func (l *laneConn) roundTrip(ctx context.Context, req *auditv1.EmitBatchRequest) (_ *auditv1.EmitBatchResponse, broken bool, _ error) {
	b, err := proto.Marshal(req)
	if err != nil {
		return nil, false, err
	}
	l.id++
	l.out = lane.Append(l.out[:0], l.id, lane.Request, b)
	dl, _ := ctx.Deadline()
	if err := l.c.SetDeadline(dl); err != nil {
		return nil, true, laneFailed(ctx, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = l.c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if l.answers != nil {
		l.answers.Wait(ctx)
		defer l.answers.Wait(context.Background()) // not kept past the emit
	}
	if _, err := l.c.Write(l.out); err != nil {
		return nil, true, laneFailed(ctx, err)
	}
	f, err := l.r.Read()
	if err != nil {
		return nil, true, laneFailed(ctx, err)
	}
	if f.ID != l.id {
		return nil, true, status.Errorf(codes.Unavailable, "record lane: the plugin answered request %d, not %d", f.ID, l.id)
	}
	switch f.Kind {
	case lane.Response:
		var resp auditv1.EmitBatchResponse
		if err := proto.Unmarshal(f.Payload, &resp); err != nil {
			return nil, true, status.Errorf(codes.Unavailable, "record lane: unreadable answer: %v", err)
		}
		return &resp, false, nil
	case lane.Status:
		var st spb.Status
		if err := proto.Unmarshal(f.Payload, &st); err != nil {
			return nil, true, status.Errorf(codes.Unavailable, "record lane: unreadable status: %v", err)
		}
		if codes.Code(st.GetCode()) == codes.OK {
			return nil, true, status.Error(codes.Unavailable, "record lane: the plugin sent a failure with code OK")
		}
		return nil, false, status.ErrorProto(&st)
	}
	return nil, true, status.Errorf(codes.Unavailable, "record lane: the plugin sent a frame of kind %d", f.Kind)
}

// laneFailed is the error of a lane that broke: the context's, when it
// ended the wait, else the plugin's being unreachable (as gRPC says it).
func laneFailed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return status.Error(codes.Unavailable, fmt.Sprintf("record lane: %v", err))
}
