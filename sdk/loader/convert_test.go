package loader

import "testing"

// TestArchitecturePresenceCrossesTheRPC: a summary without an
// architecture and one with "" stay apart over the wire.
func TestArchitecturePresenceCrossesTheRPC(t *testing.T) {
	for _, a := range []*string{nil, new(""), new("llama")} {
		s := Summary{Architecture: a}
		got := summaryFromProto(summaryToProto(&s))
		if (got.Architecture == nil) != (a == nil) || got.ArchitectureName() != s.ArchitectureName() {
			t.Errorf("architecture %v came back as %v", a, got.Architecture)
		}
	}
}
