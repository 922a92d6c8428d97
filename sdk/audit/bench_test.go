package audit

import (
	"fmt"
	"testing"
	"time"

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

// BenchmarkClientEncode is the host's cost per event of a 512-event batch as
// the client sends it (canonical records).
func BenchmarkClientEncode(b *testing.B) {
	events := benchEvents(512)
	c := &Client{max: 3 << 20, maxN: 512}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, req, _ := c.nextBatch(events)
		if _, err := proto.Marshal(req); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
}

// BenchmarkServerDecode is the plugin's cost per event before the sink.
func BenchmarkServerDecode(b *testing.B) {
	events := benchEvents(512)
	_, req, _ := (&Client{max: 3 << 20, maxN: 512}).nextBatch(events)
	wire, _ := proto.Marshal(req)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var got auditv1.EmitBatchRequest
		if err := proto.Unmarshal(wire, &got); err != nil {
			b.Fatal(err)
		}
		if _, err := batchEvents(&got); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
}

// BenchmarkClientEncodeMessages is the event-message form of a batch, kept
// for comparison.
func BenchmarkClientEncodeMessages(b *testing.B) {
	events := benchEvents(512)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := &auditv1.EmitBatchRequest{}
		for j := range events {
			req.Events = append(req.Events, eventToProto(&events[j]))
		}
		if _, err := proto.Marshal(req); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
}

// BenchmarkServerDecodeMessages is the plugin's cost per event of the
// event-message form.
func BenchmarkServerDecodeMessages(b *testing.B) {
	events := benchEvents(512)
	req := &auditv1.EmitBatchRequest{}
	for j := range events {
		req.Events = append(req.Events, eventToProto(&events[j]))
	}
	wire, _ := proto.Marshal(req)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var got auditv1.EmitBatchRequest
		if err := proto.Unmarshal(wire, &got); err != nil {
			b.Fatal(err)
		}
		for _, p := range got.GetEvents() {
			if _, err := eventFromProto(p); err != nil {
				b.Fatal(err)
			}
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

func BenchmarkSanitizeHostile(b *testing.B) {
	s := "model\x1b[31m/\u202eevil\npath/" + time.Now().String()
	for i := 0; i < b.N; i++ {
		_ = Sanitize(s)
	}
}
