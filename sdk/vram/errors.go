package vram

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"

	"github.com/vramward/vramward/sdk/internal/bounded"
	"github.com/vramward/vramward/sdk/internal/rpcerr"
	vramv1 "github.com/vramward/vramward/sdk/proto/vram/v1"
	"github.com/vramward/vramward/sdk/schema"
)

// Reason says why a backend call failed; it crosses the RPC boundary in a
// google.rpc.ErrorInfo and a Failure detail.
type Reason string

const (
	// ReasonIntegrityViolation: the bytes copied to the device do not
	// hash to the expected SHA-256 (the memory was freed). The host
	// records IntegrityViolation (CRITICAL).
	ReasonIntegrityViolation Reason = "INTEGRITY_VIOLATION"
	// ReasonPolicyViolation: the memory is not plain device memory on the
	// requested device (managed or host memory, another device). The host
	// records PolicyViolation (CRITICAL).
	ReasonPolicyViolation Reason = "POLICY_VIOLATION"
	// ReasonAllocationFailed: out of device memory or a driver error, with
	// requested and available bytes. The host records
	// VramAllocationFailed (HIGH).
	ReasonAllocationFailed Reason = "ALLOCATION_FAILED"
	// ReasonPathTraversal: the model path, or a symlink on it, leaves the
	// allowed roots the host passed in Configure. The host records
	// PathTraversalAttempt (CRITICAL).
	ReasonPathTraversal Reason = "PATH_TRAVERSAL"
	// ReasonTooLarge: the model file is over max_file_bytes. The host
	// records ResourceLimitViolation (HIGH).
	ReasonTooLarge        Reason = "TOO_LARGE"
	ReasonInvalidShardID  Reason = "INVALID_SHARD_ID"
	ReasonInvalidArgument Reason = "INVALID_ARGUMENT"
	ReasonShardExists     Reason = "SHARD_EXISTS"
	ReasonShardNotFound   Reason = "SHARD_NOT_FOUND"
	ReasonDeviceNotFound  Reason = "DEVICE_NOT_FOUND"
	ReasonInvalidConfig   Reason = "INVALID_CONFIG"
	ReasonNotConfigured   Reason = "BACKEND_NOT_CONFIGURED"
	ReasonConfigured      Reason = "BACKEND_ALREADY_CONFIGURED"
	// ReasonBackendUnavailable: the configured backend cannot run here
	// (no CUDA driver, no device), named in the message.
	ReasonBackendUnavailable Reason = "BACKEND_UNAVAILABLE"
	ReasonIOError            Reason = "IO_ERROR"
	ReasonCanceled           Reason = "CANCELED"
	// ReasonUnavailable: the plugin could not be reached (a crash). Only
	// the client raises it.
	ReasonUnavailable Reason = "VRAM_UNAVAILABLE"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of backend errors.
const ErrorDomain = "vram.vramward"

var reasonCodes = rpcerr.ByCode(map[codes.Code][]Reason{
	codes.DataLoss:           {ReasonIntegrityViolation},
	codes.PermissionDenied:   {ReasonPolicyViolation, ReasonPathTraversal},
	codes.ResourceExhausted:  {ReasonAllocationFailed, ReasonTooLarge},
	codes.InvalidArgument:    {ReasonInvalidShardID, ReasonInvalidArgument, ReasonInvalidConfig},
	codes.AlreadyExists:      {ReasonShardExists},
	codes.NotFound:           {ReasonShardNotFound, ReasonDeviceNotFound},
	codes.FailedPrecondition: {ReasonNotConfigured, ReasonConfigured, ReasonBackendUnavailable},
	codes.Unavailable:        {ReasonIOError, ReasonUnavailable},
	codes.Canceled:           {ReasonCanceled},
})

// Failure is a typed backend failure, on both sides of the RPC boundary.
type Failure struct {
	Op      string
	Reason  Reason
	Msg     string
	ShardID string
	Device  uint32
	// INTEGRITY_VIOLATION, lower-case hex.
	ExpectedSHA256, ActualSHA256 string
	// ALLOCATION_FAILED
	RequestedBytes, AvailableBytes uint64
	// POLICY_VIOLATION
	Policy, Violation string
	// TOO_LARGE
	Limit, Actual uint64
	// PATH_TRAVERSAL
	AllowedRoots []string
	// INVALID_CONFIG
	Fields []*schema.FieldError
}

func (f *Failure) Error() string {
	msg := "vram backend"
	if f.Op != "" {
		msg += " " + f.Op
	}
	msg += ": " + string(f.Reason)
	if f.ShardID != "" {
		msg += fmt.Sprintf(" (shard %s, device %d)", f.ShardID, f.Device)
	}
	if f.Msg != "" {
		msg += ": " + f.Msg
	}
	return msg
}

// Is matches a Reason (errors.Is(err, ReasonX)) and another *Failure with
// the same Reason.
func (f *Failure) Is(target error) bool {
	switch t := target.(type) {
	case Reason:
		return t == f.Reason
	case *Failure:
		return t.Reason == f.Reason
	}
	return false
}

// Error makes a Reason usable with errors.Is: a constant, so that no caller
// can change what it matches.
func (r Reason) Error() string { return string(r) }

// Fail makes a *Failure a Backend returns.
func Fail(reason Reason, format string, args ...any) *Failure {
	return &Failure{Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

func asFailure(op string, def Reason, err error) *Failure {
	var f *Failure
	if errors.As(err, &f) {
		out := *f
		out.Op = op
		return &out
	}
	out := &Failure{Op: op, Reason: def, Msg: err.Error()}
	if fe := schema.FieldErrors(err); fe != nil {
		out.Reason, out.Fields = ReasonInvalidConfig, fe
	}
	return out
}

func (f *Failure) toStatus() error {
	return rpcerr.Status(reasonCodes.Of(f.Reason), f.Error(), ErrorDomain, string(f.Reason), f.Op, nil, f.Fields, &vramv1.Failure{
		Reason: string(f.Reason), Message: f.Msg, ShardId: f.ShardID, Device: f.Device,
		ExpectedSha256: f.ExpectedSHA256, ActualSha256: f.ActualSHA256,
		RequestedBytes: f.RequestedBytes, AvailableBytes: f.AvailableBytes, Policy: f.Policy, Violation: f.Violation,
		Limit: f.Limit, Actual: f.Actual, AllowedRoots: f.AllowedRoots,
	})
}

func fromStatus(op string, err error) *Failure {
	d := rpcerr.Decode(err, ErrorDomain)
	out := &Failure{Op: op, Reason: ReasonUnavailable, Msg: d.Message, Fields: d.Fields}
	switch {
	case d.Typed:
		out.Reason = Reason(d.Reason)
	case d.Canceled():
		out.Reason = ReasonCanceled
	}
	for _, det := range d.Details {
		if f, ok := det.(*vramv1.Failure); ok {
			out.Msg, out.ShardID, out.Device = f.GetMessage(), f.GetShardId(), f.GetDevice()
			out.ExpectedSHA256, out.ActualSHA256 = f.GetExpectedSha256(), f.GetActualSha256()
			out.RequestedBytes, out.AvailableBytes = f.GetRequestedBytes(), f.GetAvailableBytes()
			out.Limit, out.Actual, out.AllowedRoots = f.GetLimit(), f.GetActual(), f.GetAllowedRoots()
			out.Policy, out.Violation = f.GetPolicy(), f.GetViolation()
		}
	}
	out.Msg, out.Policy, out.Violation = bounded.Text(out.Msg), bounded.Text(out.Policy), bounded.Text(out.Violation)
	out.ExpectedSHA256, out.ActualSHA256 = bounded.Text(out.ExpectedSHA256), bounded.Text(out.ActualSHA256)
	if out.AllowedRoots != nil {
		out.AllowedRoots = bounded.List(out.AllowedRoots)
	}
	return out
}
