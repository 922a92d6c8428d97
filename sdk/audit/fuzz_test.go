package audit

import (
	"testing"

	"google.golang.org/protobuf/proto"

	auditv1 "github.com/vramward/vramward/sdk/proto/audit/v1"
)

// FuzzEmitBatchPayload: any bytes a plugin receives as an EmitBatch request
// either fail to decode or give events that validate and survive the
// canonical JSON round trip unchanged.
func FuzzEmitBatchPayload(f *testing.F) {
	req := &auditv1.EmitBatchRequest{}
	for _, e := range benchEvents(3) {
		req.Events = append(req.Events, eventToProto(&e))
	}
	seed, _ := proto.Marshal(req)
	f.Add(seed)
	f.Add([]byte{0x0a, 0x02, 0x28, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		var got auditv1.EmitBatchRequest
		if proto.Unmarshal(data, &got) != nil {
			return
		}
		var fields []Field
		for _, p := range got.GetEvents() {
			e, err := eventFromProtoInto(p, &fields)
			if err != nil {
				continue
			}
			if err := e.Validate(); err != nil {
				t.Fatalf("accepted an invalid event: %v", err)
			}
			line := e.AppendJSON(nil)
			back, err := ParseJSON(line)
			if err != nil {
				t.Fatalf("accepted event does not parse back: %v\n%s", err, line)
			}
			if !back.IsCanonical(line) {
				t.Fatalf("round trip changed the event:\n%s", line)
			}
		}
	})
}
