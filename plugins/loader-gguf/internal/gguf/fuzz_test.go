package gguf

import (
	"bytes"
	"errors"
	"testing"

	gt "github.com/vramward/vramward/sdk/gguftest"
)

// FuzzParse feeds arbitrary bytes to the parser: it must answer with a
// File or an error, never panic, and a refusal must be a *gguf.Error
// inside the file.
func FuzzParse(f *testing.F) {
	f.Add(gt.Small().Bytes())
	f.Add(gt.Many(8, 8).Bytes())
	for _, m := range malformedFiles() {
		f.Add(m.build())
	}
	lim := DefaultLimits()
	// Small caps so that the fuzzer reaches them with small inputs.
	lim.MaxTensors, lim.MaxKV, lim.MaxStringBytes, lim.MaxArrayLen = 64, 64, 256, 1024
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Parse(bytes.NewReader(b), int64(len(b)), lim)
		if err != nil {
			var fe *Error
			if !errors.As(err, &fe) {
				t.Fatalf("not a *gguf.Error: %v", err)
			}
			if fe.Offset < 0 || fe.Offset > int64(len(b)) {
				t.Fatalf("offset %d outside the %d-byte input: %v", fe.Offset, len(b), err)
			}
			return
		}
		if file.DataOffset > uint64(len(b)) || file.MetadataBytes > uint64(len(b)) {
			t.Fatalf("accepted file with data at %d, metadata %d, size %d", file.DataOffset, file.MetadataBytes, len(b))
		}
		for _, tn := range file.Tensors {
			if file.DataOffset+tn.Offset+tn.Bytes > uint64(len(b)) {
				t.Fatalf("accepted tensor %q past the end", tn.Name)
			}
		}
	})
}
