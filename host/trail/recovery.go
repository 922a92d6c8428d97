package trail

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/transparency-dev/merkle/compact"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audit/chain"
)

// A recovery (AuditRecovered) is believed only as far as it continues
// what the verifier checked itself: the last checkpoint it verified, and
// the leaves it read since.

// recovered continues the log after a crash. An AuditRecovered record can
// only continue the log it follows: it must carry the last checkpoint this
// trail verified and the compact ranges from there to the tree the host
// resumes from, through every checkpoint the host made since (each checked
// here with the keys verified so far, each key it certifies taken only from
// those). Records the trail holds up to the resume point must be that
// tree's leaves; the seqs it cannot vouch for become a loss (Report.Lost),
// which fails verification unless the operator accepts it.
func (v *Verifier) recovered(r *chain.Record) error {
	e := &r.Event
	if r.Shortened {
		return r.Fail(chain.Malformed, "AuditRecovered shortened by the syslog sink: the log cannot be followed past it here (verify a full copy)")
	}
	var f audit.AuditRecoveredFields
	if err := audit.Decode(e, &f); err != nil {
		return r.Fail(chain.Malformed, "%v (an AuditRecovered of an earlier version cannot be bound to the log: verify with a full -copy)", err)
	}
	from, to, resume, size := f.FromSeq, f.ToSeq, f.ResumeSeq, f.TreeSize
	switch {
	case e.Seq != to+1 || from > to+1 || resume > to:
		return r.Fail(chain.Edited, "from_seq %d, to_seq %d and resume_seq %d do not fit seq %d", from, to, resume, e.Seq)
	case from <= v.ckpt.seq:
		return r.Fail(chain.Forged, "declares seqs from %d on lost in a crash, but the checkpoint at %s covers them", from, v.ckptWhere())
	}
	links, err := parseLinks(f)
	if err != nil {
		return r.Fail(chain.Malformed, "%v", err)
	}
	start := -1
	for i, k := range links {
		if k.size == v.ckpt.size && k.seq == v.ckpt.seq && bytes.Equal(k.note, v.ckpt.note) {
			start = i
		}
	}
	if start < 0 {
		return r.Fail(chain.Forged, "does not continue from the last checkpoint this trail verified (%s, tree size %d): it carries %s", v.ckptWhere(), v.ckpt.size, describeLinks(links))
	}
	// Walk from the verified checkpoint through each later one.
	t := cloneRange(v.ckpt.tree)
	last := v.ckpt
	for i := start; i < len(links); i++ {
		k := links[i]
		if i > start {
			c, err := v.openNote(k.note)
			if err != nil {
				return r.Fail(chain.Forged, "the checkpoint it carries at tree size %d: %v", k.size, err)
			}
			if c.Size != t.End() || !bytes.Equal(c.Root, rootOf(t)) {
				return r.Fail(chain.Forged, "the checkpoint it carries at tree size %d is not consistent with the checkpoint at %s and the leaves between: a rewritten history", k.size, v.ckptWhere())
			}
			if err := v.certify(c, k.note); err != nil {
				return r.Fail(chain.Forged, "the checkpoint it carries at tree size %d: %v", k.size, err)
			}
			if v.want[c.Size] {
				v.rootsAt[c.Size], v.chainRoots[c.Size] = c.Root, true
			}
			v.notes[c.Size] = k.note
			last = verified{tree: cloneRange(t), size: c.Size, seq: k.seq, note: k.note, where: fmt.Sprintf("the checkpoint of seq %d that AuditRecovered at %s carries", k.seq, r.Where())}
		}
		if err := t.AppendRange(k.seg, nil); err != nil {
			return r.Fail(chain.Malformed, "segment after tree size %d: %v", k.size, err)
		}
	}
	if e.Chain.Epoch != v.epoch() {
		return v.epochError(r)
	}
	carried := t
	have, baseEnd := v.tree.End(), v.base.End()
	lo := from // the first seq this copy cannot vouch for
	if v.gap != nil {
		if v.gapTo > to {
			return r.Fail(chain.Mismatch, "seqs %d to %d are missing, beyond the seqs %d to %d this AuditRecovered names", v.gapFrom, v.gapTo, from, to)
		}
		for s := range v.rootsAt {
			if s > v.gapTree && !v.chainRoots[s] {
				delete(v.rootsAt, s) // computed over a tree with records missing
			}
		}
		v.note("%s: seqs %d to %d are missing from this trail (AuditRecovered at seq %d names seqs %d to %d)", r.Where(), v.gapFrom, v.gapTo, e.Seq, from, to)
		v.gap = nil
		lo = min(lo, v.ckpt.seq+1) // the records after the gap cannot be checked against the tree
		v.unbound(r, size)
	} else {
		switch {
		case resume < v.baseSeq || size < baseEnd:
			return r.Fail(chain.Mismatch, "resumes the log at %d records (the last seq %d), before the checkpoint at %s: a fork", size, resume, v.ckptWhere())
		case v.lastSeq > to:
			return r.Fail(chain.Edited, "seq %d of the crashed run lies beyond to_seq %d", v.lastSeq, to)
		}
		if size <= have {
			// Every leaf up to the resume point is here: it must be the
			// tree the checkpoints bind, and the record must link to its
			// last leaf.
			at := cloneRange(v.base)
			for _, s := range v.since[:size-baseEnd] {
				if err := at.Append(s.hash[:], nil); err != nil {
					panic(err)
				}
			}
			resumeHash, resumeSeq := v.baseHash, v.baseSeq
			if size > baseEnd {
				s := v.since[size-baseEnd-1]
				resumeHash, resumeSeq = s.hash[:], s.seq
			}
			switch {
			case !at.Equal(carried) || resumeSeq != resume:
				// The records after the last checkpoint verified are not
				// the ones the log resumes from. The checkpoints carried
				// bind the log's; these are covered by none (an earlier
				// crashed run's, whose own AuditRecovered never reached
				// this copy, or edited ones): part of the loss.
				v.note("%s: the records after %s are not the ones the log resumes from (%d records, the last seq %d): written by a run that crashed, or edited, they are not part of the log",
					r.Where(), v.ckptWhere(), size, resume)
				lo = min(lo, v.ckpt.seq+1)
				v.unbound(r, size)
			case resumeHash != nil && !bytes.Equal(e.Chain.Prev, resumeHash):
				return r.Fail(chain.Edited, "chain.prev does not match the hash of seq %d, where the log resumes", resume)
			default:
				if dead := v.since[size-baseEnd:]; len(dead) > 0 {
					v.note("%s: seqs %d to %d (%d records), written by a run that crashed after its last saved state, are not part of the log: AuditRecovered at seq %d names seqs %d to %d",
						r.Where(), dead[0].seq, dead[len(dead)-1].seq, len(dead), e.Seq, from, to)
				}
				lo = min(lo, resume+1)
			}
		} else {
			// The crashed run's last records before the resume point are
			// not in this trail (lost with the host's queue): the records
			// after the last checkpoint it verified cannot be checked
			// against the tree the checkpoints bind.
			v.note("%s: seqs %d to %d are missing from this trail: lost in a crash, as AuditRecovered at seq %d says (seqs %d to %d)",
				r.Where(), v.lastSeq+1, resume, e.Seq, from, to)
			lo = min(lo, v.ckpt.seq+1)
			v.unbound(r, size)
		}
	}
	if lo <= to {
		v.rep.Lost = append(v.rep.Lost, Loss{SeqRange: SeqRange{From: lo, To: to}, At: e.Seq, Where: r.Where()})
	}
	if err := v.resume(r, carried, size, resume); err != nil {
		return err
	}
	v.ckpt = last
	return nil
}

// unbound handles the records after the last verified checkpoint that a
// recovery cannot check (some of the crashed run's leaves are missing):
// they are in the loss, and their leaves serve no proof.
func (v *Verifier) unbound(r *chain.Record, size uint64) {
	if n := len(v.since); n > 0 {
		v.note("%s: seqs %d to %d of this trail are covered by no checkpoint it can check: they are part of the loss", r.Where(), v.since[0].seq, v.since[n-1].seq)
	}
	for s := range v.want {
		if s > v.ckpt.size && s <= size && !v.chainRoots[s] {
			delete(v.rootsAt, s)
		}
	}
	if v.opts.Keep {
		n := len(v.rep.Leaves)
		for n > 0 && v.rep.Leaves[n-1].Index > v.ckpt.size {
			n--
		}
		v.rep.Leaves = v.rep.Leaves[:n]
	}
}

// recLink is one checkpoint an AuditRecovered carries and the leaves after it.
type recLink struct {
	seq, size uint64
	note      []byte
	seg       *compact.Range
}

// maxRecLinks bounds the checkpoints one AuditRecovered may carry (the host
// carries maxLinks).
const maxRecLinks = 1024

func parseLinks(f audit.AuditRecoveredFields) ([]recLink, error) {
	size := f.TreeSize
	ckpts, segs := splitList(f.Checkpoints), strings.Split(f.Segments, ";")
	if len(ckpts) == 0 {
		return nil, errors.New("carries no checkpoints (a record of an earlier version, which cannot be bound to the log: verify with a full -copy)")
	}
	if len(ckpts) > maxRecLinks || len(segs) != len(ckpts) {
		return nil, fmt.Errorf("carries %d checkpoints and %d segments", len(ckpts), len(segs))
	}
	links := make([]recLink, len(ckpts))
	for i, c := range ckpts {
		seqText, b64, ok := strings.Cut(c, ":")
		seq, err := strconv.ParseUint(seqText, 10, 64)
		if !ok || err != nil {
			return nil, fmt.Errorf("checkpoint %d is not \"<seq>:<base64 note>\"", i+1)
		}
		k := recLink{seq: seq}
		if b64 != "" {
			if k.note, err = decodeB64(b64); err != nil {
				return nil, fmt.Errorf("checkpoint %d: %v", i+1, err)
			}
			ck, err := ParseCheckpoint(k.note)
			if err != nil {
				return nil, fmt.Errorf("checkpoint %d: %v", i+1, err)
			}
			k.size = ck.Size
		} else if seq != 0 {
			return nil, fmt.Errorf("checkpoint %d has no note", i+1)
		}
		links[i] = k
	}
	for i := range links {
		end := size
		if i+1 < len(links) {
			end = links[i+1].size
		}
		if end < links[i].size || (i > 0 && links[i].seq <= links[i-1].seq) {
			return nil, fmt.Errorf("checkpoints out of order at %d", i+1)
		}
		var hashes [][]byte
		for _, s := range splitList(segs[i]) {
			h, err := decodeB64(s)
			if err != nil || len(h) != 32 {
				return nil, errors.New("segments hold a hash that is not 32 bytes in base64")
			}
			hashes = append(hashes, h)
		}
		seg, err := rf.NewRange(links[i].size, end, hashes)
		if err != nil {
			return nil, fmt.Errorf("segment after tree size %d is not the compact range of leaves %d to %d: %v", links[i].size, links[i].size, end, err)
		}
		links[i].seg = seg
	}
	return links, nil
}

func describeLinks(links []recLink) string {
	var sizes []string
	for _, k := range links {
		sizes = append(sizes, fmt.Sprintf("seq %d (tree size %d)", k.seq, k.size))
	}
	return "checkpoints at " + strings.Join(sizes, ", ")
}

// resume continues the log from the tree an AuditRecovered carries.
func (v *Verifier) resume(r *chain.Record, carried *compact.Range, size, resume uint64) error {
	e := &r.Event
	for s := range v.rootsAt {
		if s > size {
			delete(v.rootsAt, s)
		}
	}
	for s := range v.notes {
		if s > size {
			delete(v.notes, s)
			delete(v.cosigs, s)
		}
	}
	v.tree = carried
	if v.want[size] {
		v.rootsAt[size] = rootOf(v.tree)
	}
	if v.opts.Keep {
		n := len(v.rep.Leaves)
		for n > 0 && v.rep.Leaves[n-1].Index >= size {
			n--
		}
		v.rep.Leaves = v.rep.Leaves[:n]
	}
	v.rebase(resume, e.Chain.Prev)
	return nil
}
