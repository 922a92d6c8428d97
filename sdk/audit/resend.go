package audit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

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

// Learn adds every record of a JSON-lines stream (what the sink stored in
// an earlier run) to the window, so that the host's re-sends after a
// restart are skipped. Lines that are not records, and a last line cut
// short by a crash, are passed over: they were never acknowledged.
func (w *ResendWindow) Learn(r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// Longer than any record of ours: skip to the next line.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read stored records: %w", err)
		}
		if e, perr := ParseJSON(line[:len(line)-1]); perr == nil {
			w.Add(e.Seq, e.Chain.Hash)
		}
	}
}
