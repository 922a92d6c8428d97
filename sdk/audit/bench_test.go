package audit

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	auditv1 "github.com/vramward/vramward/sdk/proto/audit/v1"
)

func benchEvents(n int) []Event {
	sp, _ := Lookup(VramSealed)
	out := make([]Event, n)
	for i := range out {
		var fs []Field
		for _, f := range sp.Fields {
			if f.Kind == KindString {
				fs = append(fs, Str(f.Name, fmt.Sprintf("%s-value-%d", f.Name, i)))
			} else {
				fs = append(fs, Uint(f.Name, uint64(i)))
			}
		}
		e, err := New(VramSealed, Actor{WorkerID: "worker-1", SourceIP: "10.0.0.1", CorrelationID: "req"}, fs...)
		if err != nil {
			panic(err)
		}
		e.Seq = uint64(i + 1)
		e.Chain = Chain{Epoch: 1, Prev: make([]byte, 32), Hash: make([]byte, 32)}
		out[i] = e
	}
	return out
}

// benchRecords is a batch as the host sends it.
func benchRecords(events []Event) *auditv1.EmitBatchRequest {
	var recs []byte
	for i := range events {
		recs = append(events[i].AppendJSON(recs), '\n')
	}
	return &auditv1.EmitBatchRequest{Records: recs}
}

// BenchmarkServerDecode is the plugin's cost per event before the sink.
func BenchmarkServerDecode(b *testing.B) {
	events := benchEvents(512)
	wire, _ := proto.Marshal(benchRecords(events))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var got auditv1.EmitBatchRequest
		if err := proto.Unmarshal(wire, &got); err != nil {
			b.Fatal(err)
		}
		if _, err := batchRecords(&got); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
}

func BenchmarkAppendJSON(b *testing.B) {
	events := benchEvents(64)
	buf := make([]byte, 0, 1024)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		buf = events[i%len(events)].AppendJSON(buf[:0])
	}
	b.SetBytes(int64(len(buf)))
}
