package audit

import "bytes"

// ResendWindow remembers the chain hashes of the last n seqs a sink stored, oldest
// evicted first, so that a sink can skip an event the host sends again
// after a restart (same seq, same hash) instead of storing it twice, as the
// Sink contract asks. A sink serialised by Serve needs no locking for it.
type ResendWindow struct {
	hashes map[uint64][]byte
	order  []uint64 // ring of seqs in insertion order
	next   int
}

// NewResendWindow remembers n seqs.
func NewResendWindow(n int) *ResendWindow {
	return &ResendWindow{hashes: make(map[uint64][]byte, n), order: make([]uint64, 0, n)}
}

// Has says whether seq was stored with this hash.
func (w *ResendWindow) Has(seq uint64, hash []byte) bool {
	m, ok := w.hashes[seq]
	return ok && bytes.Equal(m, hash)
}

// Add records seq as stored with hash; events without a hash are not
// remembered.
func (w *ResendWindow) Add(seq uint64, hash []byte) {
	if len(hash) == 0 {
		return
	}
	if _, ok := w.hashes[seq]; ok {
		w.hashes[seq] = hash
		return
	}
	if len(w.order) < cap(w.order) {
		w.order = append(w.order, seq)
	} else {
		delete(w.hashes, w.order[w.next])
		w.order[w.next] = seq
		w.next = (w.next + 1) % len(w.order)
	}
	w.hashes[seq] = hash
}
