// Package rpcerr carries typed errors across the plugin RPC boundary the one
// way every plugin kind does it: a gRPC status whose details hold a
// google.rpc.ErrorInfo (domain and reason), a BadRequest for config fields
// at fault, and the kind's own detail message.
package rpcerr

import (
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/vramward/vramward/sdk/schema"
)

// Codes is a kind's table from its reasons to the gRPC code that generic
// tooling sees; the host branches on the reason, never on the code.
type Codes[R ~string] map[R]codes.Code

// ByCode writes a Codes table the way it reads best: each code and the
// reasons it stands for. A reason named under two codes is a mistake in
// the kind's table, caught when its package loads.
func ByCode[R ~string](groups map[codes.Code][]R) Codes[R] {
	out := Codes[R]{}
	for code, reasons := range groups {
		for _, r := range reasons {
			if prev, dup := out[r]; dup {
				panic(fmt.Sprintf("rpcerr: reason %s has two codes, %s and %s", r, prev, code))
			}
			out[r] = code
		}
	}
	return out
}

// Of is r's code; a reason the table lacks is codes.Unknown.
func (c Codes[R]) Of(r R) codes.Code {
	if code, ok := c[r]; ok {
		return code
	}
	return codes.Unknown
}

// Status builds the error: code and message for generic gRPC tooling,
// reason and op (and meta) in the ErrorInfo, fields in a BadRequest, then
// details.
func Status(code codes.Code, msg, domain, reason, op string, meta map[string]string, fields []*schema.FieldError, details ...protoadapt.MessageV1) error {
	st := status.New(code, msg)
	md := map[string]string{}
	for k, v := range meta {
		md[k] = v
	}
	md["op"] = op
	all := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: reason, Domain: domain, Metadata: md}}
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
	Typed  bool
	Reason string
	// Metadata is the ErrorInfo's, when Typed.
	Metadata map[string]string
	Code     codes.Code
	Message  string
	Fields   []*schema.FieldError
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
				d.Typed, d.Reason, d.Metadata = true, det.GetReason(), det.GetMetadata()
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
