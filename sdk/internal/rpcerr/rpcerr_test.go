package rpcerr

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type reason string

func TestByCodeRefusesAReasonWithTwoCodes(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("a reason under two codes was taken")
		}
	}()
	ByCode(map[codes.Code][]reason{codes.NotFound: {"A"}, codes.Internal: {"A"}})
}

func TestOfAnUnknownReasonIsUnknown(t *testing.T) {
	c := ByCode(map[codes.Code][]reason{codes.NotFound: {"A", "B"}})
	if c.Of("B") != codes.NotFound || c.Of("C") != codes.Unknown {
		t.Fatalf("Of(B) = %s, Of(C) = %s", c.Of("B"), c.Of("C"))
	}
}

// The op is the one metadata key a kind cannot overwrite: the host names
// the failed call by it.
func TestStatusCarriesMetadataButKeepsTheOp(t *testing.T) {
	err := Status(codes.Unavailable, "m", "d", "R", "emit", map[string]string{"op": "forged", "errno": "EIO"}, nil)
	d := Decode(err, "d")
	if !d.Typed || d.Reason != "R" || d.Metadata["errno"] != "EIO" || d.Metadata["op"] != "emit" {
		t.Fatalf("decoded %+v", d)
	}
	if d := Decode(errors.New("eof"), "d"); d.Typed || d.Code != codes.Unknown {
		t.Fatalf("a plain error decoded as %+v", d)
	}
	if d := Decode(status.Error(codes.Internal, "x"), "other"); d.Typed {
		t.Fatalf("another domain's status decoded as typed: %+v", d)
	}
}
