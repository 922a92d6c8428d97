package gguf

import (
	"bytes"
	"testing"

	gt "github.com/vramward/vramward/sdk/gguftest"
)

// BenchmarkParse10kTensors1kKV is the goal: the metadata of a file
// with 10,000 tensors and 1,000 metadata pairs checked in under 10 ms. The
// data section is not read (the reader holds only the header here).
func BenchmarkParse10kTensors1kKV(b *testing.B) {
	f := gt.Many(10000, 1000)
	hdr := f.Header()
	size := int64(f.Size())
	b.SetBytes(int64(len(hdr)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(bytes.NewReader(hdr), size, DefaultLimits()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1e6/float64(b.N), "ms/file")
}
