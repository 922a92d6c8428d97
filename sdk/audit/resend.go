package audit

import "bytes"

// ResendWindow remembers the chain hashes of the last n seqs a sink stored, oldest
// evicted first, so that a sink can skip an event the host sends again
// after a restart (same seq, same hash) instead of storing it twice, as the
// Sink contract asks. A sink serialised by Serve needs no locking for it.
type ResendWindow struct {
	macs  map[uint64][]byte
	order []uint64 // ring of seqs in insertion order
	next  int
}

// NewResendWindow remembers n seqs.
func NewResendWindow(n int) *ResendWindow {
	return &ResendWindow{macs: make(map[uint64][]byte, n), order: make([]uint64, 0, n)}
}

// Has says whether seq was stored with this hash.
func (w *ResendWindow) Has(seq uint64, mac []byte) bool {
	m, ok := w.macs[seq]
	return ok && bytes.Equal(m, mac)
}

// Add records seq as stored with mac; events without a hash are not
// remembered.
func (w *ResendWindow) Add(seq uint64, mac []byte) {
	if len(mac) == 0 {
		return
	}
	if _, ok := w.macs[seq]; ok {
		w.macs[seq] = mac
		return
	}
	if len(w.order) < cap(w.order) {
		w.order = append(w.order, seq)
	} else {
		delete(w.macs, w.order[w.next])
		w.order[w.next] = seq
		w.next = (w.next + 1) % len(w.order)
	}
	w.macs[seq] = mac
}
