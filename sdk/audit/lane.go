package audit

import (
	"context"
	"errors"
	"io"
	"os"
	"strconv"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/vramward/vramward/sdk/internal/lane"
	auditv1 "github.com/vramward/vramward/sdk/proto/audit/v1"
)

// openLane takes the plugin's end of the record lane, when the host passed
// one (sdk/internal/lane). The variable leaves the environment, so that no
// process the sink starts learns of it, and the descriptor is taken over
// close-on-exec, so that none inherits it either.
func openLane(logger hclog.Logger) io.ReadWriteCloser {
	v, ok := os.LookupEnv(lane.EnvFD)
	if !ok {
		return nil
	}
	_ = os.Unsetenv(lane.EnvFD)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		logger.Warn("the host named no usable record lane; every emit goes over gRPC", lane.EnvFD, v)
		return nil
	}
	f, err := lane.PluginEnd(fd)
	if err != nil {
		logger.Warn("the record lane the host passed is not usable; every emit goes over gRPC", "error", err)
		return nil
	}
	return f
}

// serveLane answers the host's requests on the lane, one at a time and in
// order, until the host closes it. A frame it cannot read ends the lane:
// the host, which then reads EOF, goes on over gRPC.
func (s *server) serveLane(c io.ReadWriteCloser) {
	defer c.Close()
	r := lane.NewReader(c, MaxMessageBytes)
	var out []byte
	for {
		f, err := r.Read()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				s.logger.Error("record lane: unreadable frame from the host; the lane is closed", "error", err)
			}
			return
		}
		if f.Kind != lane.Request {
			s.logger.Error("record lane: the host sent a frame that is not a request; the lane is closed", "kind", f.Kind)
			return
		}
		kind, msg := lane.Response, proto.Message(nil)
		var req auditv1.EmitBatchRequest
		if err := proto.Unmarshal(f.Payload, &req); err != nil {
			err = (&Error{Op: "emit_batch", Reason: ReasonInvalidEvent, Msg: "record lane: " + err.Error()}).toStatus()
			kind, msg = lane.Status, status.Convert(err).Proto()
		} else if resp, err := s.emitOne(context.Background(), &req); err != nil {
			kind, msg = lane.Status, status.Convert(err).Proto()
		} else {
			msg = resp
		}
		b, err := proto.Marshal(msg)
		if err != nil {
			s.logger.Error("record lane: cannot encode the answer; the lane is closed", "error", err)
			return
		}
		out = lane.Append(out[:0], f.ID, kind, b)
		if _, err := c.Write(out); err != nil {
			s.logger.Error("record lane: cannot answer the host; the lane is closed", "error", err)
			return
		}
	}
}
