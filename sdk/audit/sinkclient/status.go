package sinkclient

import (
	"strconv"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/internal/bounded"
	"github.com/vramward/vramward/sdk/internal/rpcerr"
)

// fromStatus decodes an RPC error into an *audit.Error. An error without our
// ErrorInfo is a transport failure or a crash: audit.ReasonUnavailable.
func fromStatus(op string, err error) *audit.Error {
	d := rpcerr.Decode(err, audit.ErrorDomain)
	out := &audit.Error{Op: op, Reason: audit.ReasonUnavailable, Msg: d.Message, Fields: d.Fields}
	if d.Typed {
		out.Reason = audit.Reason(d.Reason)
		out.Msg, out.Errno = d.Metadata["msg"], d.Metadata["errno"]
		if w, err := strconv.Atoi(d.Metadata["written"]); err == nil && w > 0 {
			out.Written = w
		}
	}
	out.Msg, out.Errno = bounded.Text(out.Msg), bounded.Text(out.Errno)
	return out
}
