package sinkclient

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/vramward/vramward/sdk/audit"
)

// BenchmarkClientEncode is the host's cost per event of a 512-event batch as
// the client sends it: record lines (encoded once, when linked) framed into
// one message.
func BenchmarkClientEncode(b *testing.B) {
	events := make([]audit.Event, 512)
	for i := range events {
		e, err := audit.New(audit.VramSealed, audit.Actor{WorkerID: "worker-1", SourceIP: "10.0.0.1", CorrelationID: "req"},
			audit.Str("shard_id", fmt.Sprintf("shard-%d", i)), audit.Uint("gpu_device", 0), audit.Str("digest", "sha256:ab"),
			audit.Uint("vram_bytes", 1<<30), audit.Str("backend", "emulated"))
		if err != nil {
			b.Fatal(err)
		}
		e.Seq = uint64(i + 1)
		e.Chain = audit.Chain{Epoch: 1, Prev: make([]byte, 32), Hash: make([]byte, 32)}
		events[i] = e
	}
	records := make([]audit.Record, len(events))
	for i := range events {
		records[i] = audit.Record{Event: events[i], Line: events[i].AppendJSON(nil)}
	}
	c := &Client{max: 3 << 20, maxN: 512}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, req, _ := c.nextBatch(recordBatch(records), 0)
		if _, err := proto.Marshal(req); err != nil {
			b.Fatal(err)
		}
		c.release(req)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
}
