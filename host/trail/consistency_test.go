package trail

import (
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// TestConsistencyProofFromRanges: for every m <= n up to 70, the proof made
// from the two compact ranges verifies with the merkle library's checker.
func TestConsistencyProofFromRanges(t *testing.T) {
	leaf := func(i uint64) []byte {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], i)
		h := sha256.Sum256(b[:])
		return rfc6962.DefaultHasher.HashLeaf(h[:])
	}
	for n := uint64(1); n <= 70; n++ {
		full := rf.NewEmptyRange(0)
		for i := uint64(0); i < n; i++ {
			if err := full.Append(leaf(i), nil); err != nil {
				t.Fatal(err)
			}
		}
		for m := uint64(0); m <= n; m++ {
			base, seg := rf.NewEmptyRange(0), rf.NewEmptyRange(m)
			for i := uint64(0); i < n; i++ {
				r := base
				if i >= m {
					r = seg
				}
				if err := r.Append(leaf(i), nil); err != nil {
					t.Fatal(err)
				}
			}
			p, err := ConsistencyProof(base, seg)
			if err != nil {
				t.Fatalf("%d to %d: %v", m, n, err)
			}
			if m == 0 {
				continue
			}
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, m, n, p, rootOf(base), rootOf(full)); err != nil {
				t.Fatalf("%d to %d: %v", m, n, err)
			}
		}
	}
}
