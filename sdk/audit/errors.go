package audit

import (
	"errors"
	"fmt"
	"strconv"
	"syscall"

	"google.golang.org/grpc/codes"

	"github.com/vramward/vramward/sdk/internal/rpcerr"
	"github.com/vramward/vramward/sdk/schema"
)

// Reason says why a sink operation failed. It crosses the RPC boundary as the
// reason of a google.rpc.ErrorInfo, so the host branches on it, never on text.
type Reason string

const (
	ReasonShutDown      Reason = "SINK_SHUT_DOWN"
	ReasonNotConfigured Reason = "SINK_NOT_CONFIGURED"
	ReasonConfigured    Reason = "SINK_ALREADY_CONFIGURED"
	ReasonInvalidConfig Reason = "INVALID_CONFIG"
	ReasonInvalidEvent  Reason = "INVALID_EVENT"
	ReasonWriteFailed   Reason = "WRITE_FAILED"
	ReasonFlushFailed   Reason = "FLUSH_FAILED"
	ReasonCloseFailed   Reason = "CLOSE_FAILED"
	ReasonSeqConflict   Reason = "SEQ_CONFLICT"
	// ReasonNotDurable: the sink acknowledged a CRITICAL event without
	// saying it was flushed. Only the client raises it.
	ReasonNotDurable Reason = "NOT_DURABLE"
	// ReasonUnavailable: the plugin could not be reached or answered with
	// an error that carries no reason (a transport failure, a crash).
	ReasonUnavailable Reason = "SINK_UNAVAILABLE"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of sink errors.
const ErrorDomain = "audit.vramward"

var reasonCodes = rpcerr.ByCode(map[codes.Code][]Reason{
	codes.FailedPrecondition: {ReasonShutDown, ReasonNotConfigured, ReasonConfigured},
	codes.InvalidArgument:    {ReasonInvalidConfig, ReasonInvalidEvent},
	codes.Unavailable:        {ReasonWriteFailed, ReasonFlushFailed, ReasonUnavailable},
	codes.Internal:           {ReasonCloseFailed, ReasonNotDurable},
	codes.Aborted:            {ReasonSeqConflict},
})

// Error is a typed sink failure, on both sides of the RPC boundary.
type Error struct {
	Op     string
	Reason Reason
	Msg    string
	// Errno names the system error behind a write or flush ("ENOSPC").
	Errno string
	// Fields lists the config attributes at fault (ReasonInvalidConfig).
	Fields []*schema.FieldError
	// Written is how many events at the front of a failed emit the sink
	// did store (a PartialWriteError); the rest were not.
	Written int
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("audit sink %s: %s", e.Op, e.Reason)
	if e.Msg != "" {
		msg += ": " + e.Msg
	}
	return msg
}

// Is matches a Reason (errors.Is(err, ReasonX)) and another *Error with
// the same Reason (and the same Op, when the target names one).
func (e *Error) Is(target error) bool {
	switch t := target.(type) {
	case Reason:
		return t == e.Reason
	case *Error:
		return t.Reason == e.Reason && (t.Op == "" || t.Op == e.Op)
	}
	return false
}

// Error makes a Reason usable with errors.Is: a constant, so that no caller
// can change what it matches.
func (r Reason) Error() string { return string(r) }

// Errorf makes an *Error a Sink can return to choose the reason the host sees.
func Errorf(reason Reason, format string, args ...any) *Error {
	return &Error{Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// asError turns whatever a Sink returned into an *Error for op, keeping a
// reason the sink chose and naming the errno behind it.
func asError(op string, def Reason, err error) *Error {
	var se *Error
	if errors.As(err, &se) {
		out := *se
		out.Op = op
		if out.Msg == "" {
			out.Msg = err.Error()
		}
		return &out
	}
	out := &Error{Op: op, Reason: def, Msg: err.Error()}
	var pe *PartialWriteError
	if errors.As(err, &pe) && pe.Written > 0 {
		out.Written = pe.Written
	}
	if fe := schema.FieldErrors(err); fe != nil {
		out.Reason, out.Fields = ReasonInvalidConfig, fe
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		out.Errno = errnoName(errno)
	}
	return out
}

// toStatus encodes an *Error as a gRPC status with ErrorInfo (and BadRequest
// for config field errors) details.
func (e *Error) toStatus() error {
	meta := map[string]string{"msg": e.Msg}
	if e.Errno != "" {
		meta["errno"] = e.Errno
	}
	if e.Written > 0 {
		meta["written"] = strconv.Itoa(e.Written)
	}
	return rpcerr.Status(reasonCodes.Of(e.Reason), e.Error(), ErrorDomain, string(e.Reason), e.Op, meta, e.Fields)
}

func errnoName(e syscall.Errno) string {
	switch e {
	case syscall.ENOSPC:
		return "ENOSPC"
	case syscall.EIO:
		return "EIO"
	case syscall.EFBIG:
		return "EFBIG"
	case syscall.EDQUOT:
		return "EDQUOT"
	case syscall.EROFS:
		return "EROFS"
	case syscall.EACCES:
		return "EACCES"
	case syscall.EPIPE:
		return "EPIPE"
	case syscall.ECONNREFUSED:
		return "ECONNREFUSED"
	case syscall.ECONNRESET:
		return "ECONNRESET"
	}
	return fmt.Sprintf("errno %d", int(e))
}
