package trail

import (
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// ConsistencyProof is RFC 6962's consistency proof from tree size m to n,
// made from the compact range of the leaves [0, m) and the compact range of
// the leaves [m, n): every node such a proof needs is one of theirs, or a
// hash of the right border of the second. The host keeps no leaves, and
// these two ranges are all a witness submission needs.
func ConsistencyProof(base, seg *compact.Range) ([][]byte, error) {
	m, n := base.End(), seg.End()
	if base.Begin() != 0 || seg.Begin() != m {
		return nil, fmt.Errorf("consistency proof: ranges [%d, %d) and [%d, %d) are not [0, m) and [m, n)", base.Begin(), m, seg.Begin(), n)
	}
	if m == 0 || m == n {
		return nil, nil
	}
	nodes, err := proof.Consistency(m, n)
	if err != nil {
		return nil, err
	}
	known := map[compact.NodeID][]byte{}
	for _, r := range []*compact.Range{base, seg} {
		for i, id := range compact.RangeNodes(r.Begin(), r.End(), nil) {
			known[id] = r.Hashes()[i]
		}
	}
	hashes := make([][]byte, 0, len(nodes.IDs))
	for _, id := range nodes.IDs {
		h, ok := known[id]
		if !ok {
			return nil, fmt.Errorf("consistency proof %d to %d: node %+v is in neither range", m, n, id)
		}
		hashes = append(hashes, h)
	}
	return nodes.Rehash(hashes, rfc6962.DefaultHasher.HashChildren)
}
