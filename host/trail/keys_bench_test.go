package trail

import "testing"

// BenchmarkKeyDestroy is what an epoch's end pays to erase the ending key:
// the zeroing and the collection that overwrites the signal frames a
// secret operation left (clobberSignalFrames). The test binary's heap is
// small; a host's is a few MiB more.
func BenchmarkKeyDestroy(b *testing.B) {
	keys := make([]*PrivateKey, b.N)
	for i := range keys {
		k, err := GenerateKey("bench.example/log")
		if err != nil {
			b.Fatal(err)
		}
		keys[i] = k
	}
	b.ResetTimer()
	for _, k := range keys {
		k.Destroy()
	}
}
