package loader

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"

	"github.com/vramward/vramward/sdk/internal/bounded"
	"github.com/vramward/vramward/sdk/internal/rpcerr"
	loaderv1 "github.com/vramward/vramward/sdk/proto/loader/v1"
	"github.com/vramward/vramward/sdk/schema"
)

// Reason says why a loader refused a model or failed. It crosses the RPC
// boundary as the reason of a google.rpc.ErrorInfo and in a Rejection
// detail, so the host branches on it, never on text.
type Reason string

const (
	// ReasonPathTraversal: the path leaves the allowed roots, lexically or
	// through a symlink. The host records PathTraversalAttempt (CRITICAL).
	ReasonPathTraversal Reason = "PATH_TRAVERSAL"
	// ReasonNotRegularFile: a directory, FIFO, socket or device.
	ReasonNotRegularFile   Reason = "NOT_REGULAR_FILE"
	ReasonNotFound         Reason = "NOT_FOUND"
	ReasonPermissionDenied Reason = "PERMISSION_DENIED"
	// ReasonTooLarge: the file is over max_file_bytes.
	ReasonTooLarge Reason = "TOO_LARGE"
	// ReasonIntegrityViolation: the SHA-256 of the file is not the
	// expected one. The host records IntegrityViolation (CRITICAL).
	ReasonIntegrityViolation Reason = "INTEGRITY_VIOLATION"
	// ReasonMalformedModel: the format is broken or hostile. The host
	// records MalformedModelRejected (HIGH).
	ReasonMalformedModel Reason = "MALFORMED_MODEL"
	// ReasonInvalidArgument: the request itself is wrong (an expected
	// digest that is not 64 hex digits, an empty path).
	ReasonInvalidArgument Reason = "INVALID_ARGUMENT"
	ReasonInvalidConfig   Reason = "INVALID_CONFIG"
	ReasonNotConfigured   Reason = "LOADER_NOT_CONFIGURED"
	ReasonConfigured      Reason = "LOADER_ALREADY_CONFIGURED"
	// ReasonIOError: reading the file failed (EIO, the file shrank).
	ReasonIOError  Reason = "IO_ERROR"
	ReasonCanceled Reason = "CANCELED"
	// ReasonUnavailable: the plugin could not be reached or answered
	// without a reason (a crash). Only the client raises it.
	ReasonUnavailable Reason = "LOADER_UNAVAILABLE"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of loader errors.
const ErrorDomain = "loader.vramward"

var reasonCodes = rpcerr.ByCode(map[codes.Code][]Reason{
	codes.PermissionDenied:   {ReasonPathTraversal, ReasonPermissionDenied},
	codes.FailedPrecondition: {ReasonNotRegularFile, ReasonNotConfigured, ReasonConfigured},
	codes.NotFound:           {ReasonNotFound},
	codes.ResourceExhausted:  {ReasonTooLarge},
	codes.DataLoss:           {ReasonIntegrityViolation},
	codes.InvalidArgument:    {ReasonMalformedModel, ReasonInvalidArgument, ReasonInvalidConfig},
	codes.Unavailable:        {ReasonIOError, ReasonUnavailable},
	codes.Canceled:           {ReasonCanceled},
})

// Rejection is a typed loader outcome other than success, on both sides of
// the RPC boundary. The fields past Msg are set where the reason has them.
type Rejection struct {
	Op     string
	Reason Reason
	Msg    string

	Path         string
	AllowedRoots []string
	// INTEGRITY_VIOLATION, lower-case hex.
	ExpectedSHA256, ActualSHA256 string
	// MALFORMED_MODEL: the format's reason and the byte offset at fault
	// (-1 when the format names none).
	FormatReason string
	Offset       int64
	// TOO_LARGE
	Limit, Actual uint64
	// INVALID_CONFIG
	Fields []*schema.FieldError
}

func (r *Rejection) Error() string {
	msg := "model loader"
	if r.Op != "" {
		msg += " " + r.Op
	}
	msg += ": " + string(r.Reason)
	if r.Path != "" {
		msg += fmt.Sprintf(" (%s)", r.Path)
	}
	if r.Msg != "" {
		msg += ": " + r.Msg
	}
	return msg
}

// Is matches a Reason (errors.Is(err, ReasonX)) and another *Rejection with
// the same Reason.
func (r *Rejection) Is(target error) bool {
	switch t := target.(type) {
	case Reason:
		return t == r.Reason
	case *Rejection:
		return t.Reason == r.Reason
	}
	return false
}

// Error makes a Reason usable with errors.Is: a constant, so that no caller
// can change what it matches.
func (r Reason) Error() string { return string(r) }

// Reject makes a *Rejection a Loader returns.
func Reject(reason Reason, path string, format string, args ...any) *Rejection {
	return &Rejection{Reason: reason, Path: path, Msg: fmt.Sprintf(format, args...), Offset: -1}
}

// asRejection turns whatever a Loader returned into a *Rejection for op.
func asRejection(op string, def Reason, err error) *Rejection {
	var r *Rejection
	if errors.As(err, &r) {
		out := *r
		out.Op = op
		return &out
	}
	out := &Rejection{Op: op, Reason: def, Msg: err.Error(), Offset: -1}
	if fe := schema.FieldErrors(err); fe != nil {
		out.Reason, out.Fields = ReasonInvalidConfig, fe
	}
	return out
}

func (r *Rejection) toStatus() error {
	return rpcerr.Status(reasonCodes.Of(r.Reason), r.Error(), ErrorDomain, string(r.Reason), r.Op, nil, r.Fields, &loaderv1.Rejection{
		Reason: string(r.Reason), Message: r.Msg, Path: r.Path, AllowedRoots: r.AllowedRoots,
		ExpectedSha256: r.ExpectedSHA256, ActualSha256: r.ActualSHA256,
		FormatReason: r.FormatReason, Offset: r.Offset, Limit: r.Limit, Actual: r.Actual,
	})
}

// fromStatus decodes an RPC error into a *Rejection. An error without our
// ErrorInfo is a transport failure or a crash: ReasonUnavailable.
func fromStatus(op string, err error) *Rejection {
	d := rpcerr.Decode(err, ErrorDomain)
	out := &Rejection{Op: op, Reason: ReasonUnavailable, Msg: d.Message, Offset: -1, Fields: d.Fields}
	switch {
	case d.Typed:
		out.Reason = Reason(d.Reason)
	case d.Canceled():
		out.Reason = ReasonCanceled
	}
	for _, det := range d.Details {
		if r, ok := det.(*loaderv1.Rejection); ok {
			out.Msg, out.Path, out.AllowedRoots = r.GetMessage(), r.GetPath(), r.GetAllowedRoots()
			out.ExpectedSHA256, out.ActualSHA256 = r.GetExpectedSha256(), r.GetActualSha256()
			out.FormatReason, out.Offset = r.GetFormatReason(), r.GetOffset()
			out.Limit, out.Actual = r.GetLimit(), r.GetActual()
		}
	}
	out.Msg, out.Path, out.FormatReason = bounded.Text(out.Msg), bounded.Text(out.Path), bounded.Text(out.FormatReason)
	out.ExpectedSHA256, out.ActualSHA256 = bounded.Text(out.ExpectedSHA256), bounded.Text(out.ActualSHA256)
	if out.AllowedRoots != nil {
		out.AllowedRoots = bounded.List(out.AllowedRoots)
	}
	return out
}
