package filesink

import "bytes"

// window remembers the MACs of the last n seqs written, oldest evicted first.
type window struct {
	macs  map[uint64][]byte
	order []uint64 // ring of seqs in insertion order
	next  int
}

func newWindow(n int) window {
	return window{macs: make(map[uint64][]byte, n), order: make([]uint64, 0, n)}
}

func (w *window) has(seq uint64, mac []byte) bool {
	m, ok := w.macs[seq]
	return ok && bytes.Equal(m, mac)
}

func (w *window) add(seq uint64, mac []byte) {
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
