package trail

import (
	"bytes"

	"github.com/vramward/vramward/sdk/audit/chain"
)

// Re-sends: a copy an at-least-once transport wrote may hold a record
// twice, byte for byte.

// resend reports whether r is a byte-identical re-send of a record read
// before (skipped, and noted with its run); a different record of a seq
// already read is a duplicate.
func (v *Verifier) resend(r *chain.Record) (bool, error) {
	seq := r.Event.Seq
	if v.recent == nil {
		v.recent = map[uint64][32]byte{}
	}
	if h, ok := v.recent[seq]; ok && v.rep.Records > 0 && seq <= v.lastSeq {
		if !bytes.Equal(h[:], r.Hash) {
			return false, r.Fail(chain.Duplicate, "seq %d appears twice, and the two records differ: not a re-send", seq)
		}
		if v.resent != nil && seq == v.resent.to+1 {
			v.resent.to = seq
		} else {
			v.endResend()
			v.resent = &resendRun{from: seq, to: seq, where: r.Where()}
		}
		v.rep.Resent++
		return true, nil
	}
	v.endResend()
	var h [32]byte
	copy(h[:], r.Hash)
	v.recent[seq] = h
	v.recentSeqs = append(v.recentSeqs, seq)
	if len(v.recentSeqs) > resendWindow {
		delete(v.recent, v.recentSeqs[0])
		v.recentSeqs = v.recentSeqs[1:]
	}
	return false, nil
}

func (v *Verifier) endResend() {
	if v.resent == nil {
		return
	}
	if v.resent.from == v.resent.to {
		v.note("seq %d at %s is a byte-identical re-send (at-least-once delivery): counted once", v.resent.from, v.resent.where)
	} else {
		v.note("seqs %d to %d from %s are byte-identical re-sends (at-least-once delivery): counted once", v.resent.from, v.resent.to, v.resent.where)
	}
	v.resent = nil
}
