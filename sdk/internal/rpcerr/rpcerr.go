// Package rpcerr carries typed errors across the plugin RPC boundary the one
// way every plugin kind does it: a gRPC status whose details hold a
// google.rpc.ErrorInfo (domain and reason), a BadRequest for config fields
// at fault, and the kind's own detail message.
package rpcerr

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/vramward/vramward/sdk/schema"
)

// Status builds the error: code and message for generic gRPC tooling,
// reason and op in the ErrorInfo, fields in a BadRequest, then details.
func Status(code codes.Code, msg, domain, reason, op string, fields []*schema.FieldError, details ...protoadapt.MessageV1) error {
	st := status.New(code, msg)
	all := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: reason, Domain: domain, Metadata: map[string]string{"op": op}}}
	all = append(all, details...)
	if len(fields) > 0 {
		br := &errdetails.BadRequest{}
		for _, f := range fields {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: f.Field, Description: f.Msg})
		}
		all = append(all, br)
	}
	if with, err := st.WithDetails(all...); err == nil {
		st = with
	}
	return st.Err()
}

// Decoded is what an RPC error said.
type Decoded struct {
	// Typed is set when the error carries an ErrorInfo of the domain;
	// otherwise it is a transport failure or a crash.
	Typed   bool
	Reason  string
	Code    codes.Code
	Message string
	Fields  []*schema.FieldError
	// Details are the other detail messages, for the kind to pick its own.
	Details []any
}

// Decode reads an RPC error.
func Decode(err error, domain string) Decoded {
	st, ok := status.FromError(err)
	if !ok {
		return Decoded{Code: codes.Unknown, Message: err.Error()}
	}
	d := Decoded{Code: st.Code(), Message: st.Message()}
	for _, det := range st.Details() {
		switch det := det.(type) {
		case *errdetails.ErrorInfo:
			if det.GetDomain() == domain {
				d.Typed, d.Reason = true, det.GetReason()
			}
		case *errdetails.BadRequest:
			for _, v := range det.GetFieldViolations() {
				d.Fields = append(d.Fields, &schema.FieldError{Field: v.GetField(), Msg: v.GetDescription()})
			}
		default:
			d.Details = append(d.Details, det)
		}
	}
	return d
}

// Canceled says whether the code is a cancellation or a deadline.
func (d Decoded) Canceled() bool {
	return d.Code == codes.Canceled || d.Code == codes.DeadlineExceeded
}
