package loader

import (
	"errors"
	"reflect"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vramward/vramward/sdk/schema"
)

// A rejection crosses the RPC boundary with every field, as typed details.
func TestRejectionRoundTrip(t *testing.T) {
	in := &Rejection{Op: "validate", Reason: ReasonIntegrityViolation, Msg: "digest differs", Path: "/m/x.gguf",
		AllowedRoots: []string{"/m"}, ExpectedSHA256: "aa", ActualSHA256: "bb", FormatReason: "BAD_DIMS",
		Offset: 42, Limit: 7, Actual: 8, Fields: []*schema.FieldError{{Field: "allowed_roots", Msg: "missing"}}}
	err := in.toStatus()
	if st, _ := status.FromError(err); st.Code() != codes.DataLoss {
		t.Fatalf("code %v", st.Code())
	}
	out := fromStatus("validate", err)
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("\n in %+v\nout %+v", in, out)
	}
	if !errors.Is(out, ReasonIntegrityViolation) || errors.Is(out, ReasonPathTraversal) {
		t.Fatal("errors.Is does not follow the reason")
	}
}

// An error without our details is a transport failure or a crash.
func TestUntypedErrorIsUnavailable(t *testing.T) {
	for _, err := range []error{errors.New("eof"), status.Error(codes.Internal, "panic")} {
		if r := fromStatus("inspect", err); r.Reason != ReasonUnavailable {
			t.Errorf("%v: %s", err, r.Reason)
		}
	}
	if r := fromStatus("inspect", status.Error(codes.DeadlineExceeded, "slow")); r.Reason != ReasonCanceled {
		t.Errorf("deadline: %s", r.Reason)
	}
}

func TestNormalizeSHA256(t *testing.T) {
	good := "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
	if d, err := NormalizeSHA256(" " + good + "\n"); err != nil || d != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Fatalf("%q %v", d, err)
	}
	for _, bad := range []string{"", "e3b0", good + "0", "z" + good[1:]} {
		if _, err := NormalizeSHA256(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
