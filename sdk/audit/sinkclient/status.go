package sinkclient

import (
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/internal/bounded"
	"github.com/vramward/vramward/sdk/schema"
)

// fromStatus decodes an RPC error into an *audit.Error. An error without our
// ErrorInfo is a transport failure or a crash: audit.ReasonUnavailable.
func fromStatus(op string, err error) *audit.Error {
	st, ok := status.FromError(err)
	if !ok {
		return &audit.Error{Op: op, Reason: audit.ReasonUnavailable, Msg: err.Error()}
	}
	out := &audit.Error{Op: op, Reason: audit.ReasonUnavailable, Msg: st.Message()}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			if d.GetDomain() == audit.ErrorDomain {
				out.Reason = audit.Reason(d.GetReason())
				out.Msg = d.GetMetadata()["msg"]
				out.Errno = d.GetMetadata()["errno"]
				if w, err := strconv.Atoi(d.GetMetadata()["written"]); err == nil && w > 0 {
					out.Written = w
				}
			}
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				out.Fields = append(out.Fields, &schema.FieldError{Field: v.GetField(), Msg: v.GetDescription()})
			}
		}
	}
	out.Msg = bounded.Text(out.Msg)
	return out
}
