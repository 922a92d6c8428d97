package audit

import (
	"testing"

	"google.golang.org/protobuf/proto"

	auditv1 "github.com/vramward/vramward/sdk/proto/audit/v1"
)

// FuzzEmitBatchPayload: any bytes a plugin receives as an EmitBatch request
// either fail to decode or give events that validate and whose lines are
// exactly what the host would encode for them.
func FuzzEmitBatchPayload(f *testing.F) {
	seed, _ := proto.Marshal(benchRecords(benchEvents(3)))
	f.Add(seed)
	f.Add([]byte{0x12, 0x02, 0x7b, 0x0a})
	f.Fuzz(func(t *testing.T, data []byte) {
		var got auditv1.EmitBatchRequest
		if proto.Unmarshal(data, &got) != nil {
			return
		}
		records, err := batchRecords(&got)
		if err != nil {
			return
		}
		for _, r := range records {
			if err := r.Event.Validate(); err != nil {
				t.Fatalf("accepted an invalid event: %v", err)
			}
			if string(r.Event.AppendJSON(nil)) != string(r.Line) {
				t.Fatalf("accepted a record the host would encode otherwise:\n%s", r.Line)
			}
		}
	})
}

// FuzzParseCanonical: the fast parser accepts exactly the canonical records
// the general one accepts, and agrees with it on their content.
func FuzzParseCanonical(f *testing.F) {
	for _, e := range benchEvents(2) {
		f.Add(e.AppendJSON(nil))
	}
	e := goldenEvent()
	f.Add(e.AppendJSON(nil))
	f.Add([]byte(`{"seq":1,"id":"","time":"2026-01-01T00:00:00.000000000Z","type":"X","severity":"INFO","service_id":"\u2028\\","actor":{"worker_id":"","source_ip":"","correlation_id":""},"fields":{"a":-9223372036854775808,"b":true},"chain":{"epoch":0,"prev":"","hash":""}}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		fast, ferr := ParseCanonical(line)
		slow, serr := ParseJSON(line)
		canonical := serr == nil && slow.IsCanonical(line)
		if (ferr == nil) != canonical {
			t.Fatalf("fast parser: %v; general parser: %v, canonical %v\n%s", ferr, serr, canonical, line)
		}
		if ferr == nil && string(fast.AppendJSON(nil)) != string(slow.AppendJSON(nil)) {
			t.Fatalf("parsers disagree on\n%s", line)
		}
		if ferr == nil && string(line) != string(fast.AppendJSON(nil)) {
			t.Fatalf("the kept record differs from the encoding of\n%s", line)
		}
	})
}
