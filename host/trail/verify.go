package trail

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/note"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audit/chain"
)

// Unsigned is the problem of records no signed checkpoint covers.
const Unsigned chain.Problem = "unsigned"

// maxUncovered bounds the records a verifier holds between two checkpoints;
// the host checkpoints every checkpoint_events records, so a trail with
// far more in a row is not one the host wrote.
const maxUncovered = 1 << 21

// External is a checkpoint kept off the node (by a witness, a cron job, a
// syslog receiver) that the trail must be consistent with.
type External struct {
	Name string
	Note []byte
}

// Options say what to verify a trail against.
type Options struct {
	// Key is the log's first-epoch public key (state_dir/audit.pub).
	Key note.Verifier
	// Checkpoints must each be consistent with the trail.
	Checkpoints []External
	// Live accepts records after the last checkpoint (a host still
	// running) with a note instead of failing.
	Live bool
	// Keep keeps every record's seq and hash (for comparing copies) and
	// the tree's leaves (for inclusion proofs).
	Keep bool
	// AcceptLoss are the losses the operator accepts, each exactly as
	// verification names it: any other seqs an AuditRecovered declares lost
	// fail verification.
	AcceptLoss []SeqRange
	// Witnesses are witness keys (tlog-cosignature/v1): every cosignature
	// by one of them, in the trail (AuditCheckpointCosigned) or on a
	// checkpoint given, must verify over the trail's checkpoint of that
	// size, and at least one checkpoint must be cosigned by Quorum of them.
	Witnesses []note.Verifier
	Quorum    int
	// Resends accepts a record read again byte for byte (the same hash) as
	// a re-send of an at-least-once transport (RELP after a stall), noted
	// and counted once; a record of a seq already read that differs still
	// fails. For copies a receiver wrote; a sink's own trail has no
	// re-sends.
	Resends bool
}

// resendWindow is how many of the last records a re-send is matched
// against: far more than a transport keeps unacknowledged.
const resendWindow = 1 << 16

// Seen is one record as read, for comparing copies.
type Seen struct {
	Seq    uint64
	Hash   [32]byte
	Source string
	Line   int
}

// Report is what a verified trail holds.
type Report struct {
	Origin      string
	Records     int
	FirstSeq    uint64
	LastSeq     uint64
	LastType    audit.Type
	TreeSize    uint64
	Epoch       uint64
	Checkpoints int
	// Last is the last checkpoint in the trail and the seq of its record.
	Last   Checkpoint
	LastAt uint64
	Notes  []string
	Seen   []Seen // with Options.Keep, in the order read
	// Resent counts the byte-identical re-sends skipped (Options.Resends).
	Resent int
	// Leaves are the final tree's leaves present in the trail, by index
	// (Options.Keep); a leaf lost in a crash is absent.
	Leaves []Leaf
	// Keys are the verifier keys of every epoch, first to last.
	Keys []string
	// Lost are the seqs this trail cannot vouch for after a crash: those an
	// AuditRecovered declares, and those after the last checkpoint verified
	// before it that cannot be checked against the tree the log resumed
	// from. Each fails verification unless accepted (Options.AcceptLoss).
	Lost []Loss
	// Certs are the checkpoints that certified each key after the first,
	// in epoch order: what a proof carries so that the first key suffices.
	Certs [][]byte
	// Cosigned is the largest checkpoint cosigned by Options.Quorum of
	// Options.Witnesses (with Witnesses), and its note with their
	// cosignatures.
	Cosigned     Checkpoint
	CosignedNote []byte
}

// SeqRange is the seqs From to To.
type SeqRange struct{ From, To uint64 }

func (r SeqRange) String() string { return fmt.Sprintf("%d-%d", r.From, r.To) }

// ParseSeqRange reads "FROM-TO".
func ParseSeqRange(s string) (SeqRange, error) {
	a, b, ok := strings.Cut(s, "-")
	from, err1 := strconv.ParseUint(a, 10, 64)
	to, err2 := strconv.ParseUint(b, 10, 64)
	if !ok || err1 != nil || err2 != nil || from == 0 || to < from {
		return SeqRange{}, fmt.Errorf("%q is not a range of seqs FROM-TO", s)
	}
	return SeqRange{from, to}, nil
}

// Loss is a range of seqs a trail cannot vouch for after a crash, and the
// AuditRecovered record that declares it.
type Loss struct {
	SeqRange
	At    uint64 // the AuditRecovered's seq
	Where string
}

// Lost is the problem of seqs a crash took, not accepted by the operator.
const Lost chain.Problem = "lost"

// Unwitnessed is the problem of a trail no quorum of witnesses cosigned.
const Unwitnessed chain.Problem = "unwitnessed"

// Leaf is one leaf of the tree.
type Leaf struct {
	Index uint64
	Seq   uint64
	Hash  []byte
}

type sinceRec struct {
	seq  uint64
	hash [32]byte
}

// Verifier checks a trail record by record.
type Verifier struct {
	opts     Options
	keys     []note.Verifier // by epoch
	rep      Report
	tree     *compact.Range
	base     *compact.Range // the tree up to the last checkpoint record or recovery point
	since    []sinceRec     // leaves after base
	baseSeq  uint64         // seq of base's last leaf
	baseHash []byte         // and its hash
	lastSeq  uint64
	last     []byte // hash of the last record read
	// ckpt is the last checkpoint verified: the one an AuditRecovered must
	// continue from.
	ckpt verified
	// chainRoots are the tree sizes whose roots a recovery's checkpoints gave.
	chainRoots map[uint64]bool
	// notes are the verified checkpoints by tree size; cosigs the witness
	// cosignature lines verified on each, by witness key.
	notes     map[uint64][]byte
	cosigs    map[uint64]map[string][]byte
	want      map[uint64]bool   // sizes external checkpoints need roots at
	rootsAt   map[uint64][]byte // roots at those sizes, in the current branch
	shortCkpt string            // where a checkpoint was shortened, for messages
	source    string
	lastWhere string // the last record read, for messages
	// gap is the first run of missing records not explained yet: from
	// gapFrom to gapTo (the last gap's end), found at tree size gapTree.
	gap                     *chain.Error
	gapFrom, gapTo, gapTree uint64
	// recent are the hashes of the last records read, by seq, for matching
	// re-sends (Options.Resends); resent is the run of re-sends being read.
	recent     map[uint64][32]byte
	recentSeqs []uint64
	resent     *resendRun
}

type resendRun struct {
	from, to uint64
	where    string
}

// NewVerifier starts verifying a trail.
func NewVerifier(opts Options) *Verifier {
	v := &Verifier{opts: opts, keys: []note.Verifier{opts.Key}, tree: rf.NewEmptyRange(0), base: rf.NewEmptyRange(0),
		want: map[uint64]bool{}, rootsAt: map[uint64][]byte{}, chainRoots: map[uint64]bool{}, ckpt: verified{tree: rf.NewEmptyRange(0)},
		notes: map[uint64][]byte{}, cosigs: map[uint64]map[string][]byte{}}
	v.rep.Origin = opts.Key.Name()
	for _, x := range opts.Checkpoints {
		if c, err := ParseCheckpoint(x.Note); err == nil {
			v.want[c.Size] = true
		}
	}
	if v.want[0] {
		v.rootsAt[0] = emptyRoot
	}
	return v
}

// Verify checks the trail in sources, in the order given.
func Verify(opts Options, sources ...chain.Source) (Report, error) {
	v := NewVerifier(opts)
	for _, src := range sources {
		if err := v.ReadFrom(src); err != nil {
			return v.rep, err
		}
	}
	return v.Close()
}

// ReadFrom checks every record of one source.
func (v *Verifier) ReadFrom(src chain.Source) error {
	v.source = src.Name
	return chain.ReadRecords(src, v.record)
}

func (v *Verifier) record(r chain.Record) error {
	e := &r.Event
	if v.opts.Resends {
		if again, err := v.resend(&r); again || err != nil {
			return err
		}
	}
	if v.opts.Keep {
		s := Seen{Seq: e.Seq, Source: r.Source, Line: r.Line}
		copy(s.Hash[:], r.Hash)
		v.rep.Seen = append(v.rep.Seen, s)
	}
	if v.rep.Records == 0 {
		v.rep.FirstSeq = e.Seq
		switch {
		case e.Seq != 1:
			v.openGap(&r, 1, "the trail starts at seq %d: records 1 to %d are missing (cut from the head, or older files not given)", e.Seq, e.Seq-1)
		case len(e.Chain.Prev) != 0:
			return r.Fail(chain.Edited, "the first record of a trail links to a previous one")
		}
	} else {
		switch {
		case e.Seq == v.lastSeq:
			return r.Fail(chain.Duplicate, "seq %d appears twice", e.Seq)
		case e.Seq < v.lastSeq && v.gap != nil && e.Seq >= v.gapFrom:
			g := *v.gap
			g.Problem, g.Detail = chain.Reordered, fmt.Sprintf("comes before seq %d (%s)", e.Seq, r.Where())
			return &g
		case e.Seq < v.lastSeq:
			return r.Fail(chain.Reordered, "follows seq %d", v.lastSeq)
		case e.Type == audit.AuditRecovered:
			// Links to the point the host resumed from; checked there.
		case e.Seq > v.lastSeq+1:
			// Records lost in a crash look the same as records deleted:
			// only an AuditRecovered before the next checkpoint can
			// explain them.
			v.openGap(&r, v.lastSeq+1, "records %d to %d are missing", v.lastSeq+1, e.Seq-1)
		case !bytes.Equal(e.Chain.Prev, v.last):
			return r.Fail(chain.Edited, "chain.prev does not match the hash of seq %d", v.lastSeq)
		}
	}
	if r.Shortened {
		v.note("%s: seq %d: shortened by the syslog sink: its content is not checked here (check it in a full copy)", r.Where(), e.Seq)
	}
	if e.Type == audit.AuditRecovered {
		if err := v.recovered(&r); err != nil {
			return err
		}
	} else if e.Chain.Epoch != v.epoch() {
		return v.epochError(&r)
	}
	if e.Type == audit.AuditCheckpointCosigned && !r.Shortened {
		if err := v.cosigned(&r); err != nil {
			return err
		}
	}
	if e.Type == audit.AuditCheckpoint {
		if err := v.checkpoint(&r); err != nil {
			return err
		}
	} else {
		v.appendLeaf(e.Seq, r.Hash)
		if len(v.since) > maxUncovered {
			return r.Fail(Unsigned, "more than %d records without a checkpoint: the host checkpoints far more often", maxUncovered)
		}
	}
	v.rep.Records++
	v.lastWhere = fmt.Sprintf("seq %d at %s", e.Seq, r.Where())
	v.rep.LastSeq, v.rep.LastType = e.Seq, e.Type
	v.lastSeq, v.last = e.Seq, r.Hash
	return nil
}

func (v *Verifier) epoch() uint64 { return uint64(len(v.keys) - 1) }

// openGap notes records missing before r; the first gap is the error if no
// AuditRecovered explains it before the next checkpoint or the end.
func (v *Verifier) openGap(r *chain.Record, from uint64, format string, args ...any) {
	if v.gap == nil {
		v.gap = r.Fail(chain.Missing, format, args...)
		v.gapFrom, v.gapTo, v.gapTree = from, r.Event.Seq-1, v.tree.End()
	} else {
		v.gapTo = r.Event.Seq - 1
	}
}

func (v *Verifier) epochError(r *chain.Record) error {
	got := r.Event.Chain.Epoch
	if got == v.epoch()+1 && v.shortCkpt != "" {
		return r.Fail(chain.Forged, "epoch %d, but the checkpoint that would certify its key is shortened in this copy (%s): verify a full copy", got, v.shortCkpt)
	}
	if got > v.epoch() {
		return r.Fail(chain.Forged, "epoch %d, but no checkpoint certified a key beyond epoch %d", got, v.epoch())
	}
	return r.Fail(chain.Edited, "epoch %d after epoch %d", got, v.epoch())
}

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

func (v *Verifier) note(format string, args ...any) {
	v.rep.Notes = append(v.rep.Notes, fmt.Sprintf(format, args...))
}

func (v *Verifier) appendLeaf(seq uint64, hash []byte) {
	if err := v.tree.Append(hash, nil); err != nil {
		panic(err)
	}
	var s sinceRec
	s.seq = seq
	copy(s.hash[:], hash)
	v.since = append(v.since, s)
	if v.opts.Keep {
		v.rep.Leaves = append(v.rep.Leaves, Leaf{Index: v.tree.End() - 1, Seq: seq, Hash: append([]byte(nil), hash...)})
	}
	if size := v.tree.End(); v.want[size] {
		v.rootsAt[size] = rootOf(v.tree)
	}
}

// rebase makes the current tree the base later recoveries rewind to.
func (v *Verifier) rebase(seq uint64, hash []byte) {
	v.base = cloneRange(v.tree)
	v.since = v.since[:0]
	v.baseSeq, v.baseHash = seq, append([]byte(nil), hash...)
}

func cloneRange(r *compact.Range) *compact.Range {
	hashes := make([][]byte, len(r.Hashes()))
	copy(hashes, r.Hashes())
	c, err := rf.NewRange(r.Begin(), r.End(), hashes)
	if err != nil {
		panic(err)
	}
	return c
}

func (v *Verifier) checkpoint(r *chain.Record) error {
	e := &r.Event
	if v.gap != nil {
		return v.gap // a checkpoint over a tree with records missing
	}
	if r.Shortened {
		v.shortCkpt = r.Where()
		v.appendLeaf(e.Seq, r.Hash)
		return nil
	}
	raw, err := decodeB64(fieldStr(e, "note"))
	if err != nil {
		return r.Fail(chain.Malformed, "checkpoint note is not base64: %v", err)
	}
	c, err := Open(raw, v.keys[v.epoch()])
	if err != nil {
		return r.Fail(chain.Forged, "checkpoint is not signed by the key of epoch %d (signature: %s): %v", v.epoch(), SignerOf(raw), err)
	}
	switch {
	case c.Origin != v.rep.Origin:
		return r.Fail(chain.Forged, "checkpoint of log %q in the log %q", c.Origin, v.rep.Origin)
	case c.Epoch != v.epoch():
		return r.Fail(chain.Forged, "checkpoint says epoch %d, signed by the key of epoch %d", c.Epoch, v.epoch())
	case c.Size != v.tree.End():
		return r.Fail(chain.Edited, "checkpoint covers %d records, %d precede it", c.Size, v.tree.End())
	case !bytes.Equal(c.Root, rootOf(v.tree)):
		return r.Fail(chain.Edited, "checkpoint root does not match the records before it: one of seqs %d to %d was edited, replaced or moved", v.firstSince(), v.lastSeq)
	case fieldUint(e, "tree_size") != c.Size || fieldStr(e, "root_hash") != hex.EncodeToString(c.Root) || fieldStr(e, "next_key") != c.NextKey:
		return r.Fail(chain.Edited, "tree_size, root_hash or next_key differ from the signed note")
	}
	if err := v.certify(c, raw); err != nil {
		return r.Fail(chain.Forged, "%v", err)
	}
	v.ckpt = verified{tree: cloneRange(v.tree), size: c.Size, seq: e.Seq, note: raw, where: fmt.Sprintf("%s (seq %d)", r.Where(), e.Seq)}
	v.appendLeaf(e.Seq, r.Hash)
	v.rebase(e.Seq, r.Hash)
	v.rep.Checkpoints++
	v.rep.Last, v.rep.LastAt = c, e.Seq
	v.notes[c.Size] = raw
	v.shortCkpt = ""
	return nil
}

func (v *Verifier) firstSince() uint64 {
	if len(v.since) > 0 {
		return v.since[0].seq
	}
	return v.baseSeq
}

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
	from, to, resume, size := fieldUint(e, "from_seq"), fieldUint(e, "to_seq"), fieldUint(e, "resume_seq"), fieldUint(e, "tree_size")
	switch {
	case e.Seq != to+1 || from > to+1 || resume > to:
		return r.Fail(chain.Edited, "from_seq %d, to_seq %d and resume_seq %d do not fit seq %d", from, to, resume, e.Seq)
	case from <= v.ckpt.seq:
		return r.Fail(chain.Forged, "declares seqs from %d on lost in a crash, but the checkpoint at %s covers them", from, v.ckptWhere())
	}
	links, err := parseLinks(e, size)
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

// cosigned checks an AuditCheckpointCosigned record: a cosignature by a
// witness key given must verify over the trail's checkpoint of its size.
func (v *Verifier) cosigned(r *chain.Record) error {
	e := &r.Event
	size := fieldUint(e, "tree_size")
	sigs, err := decodeB64(fieldStr(e, "cosignature"))
	if err != nil {
		return r.Fail(chain.Malformed, "cosignature is not base64: %v", err)
	}
	raw, ok := v.notes[size]
	if !ok {
		return r.Fail(chain.Mismatch, "cosigns the checkpoint of tree size %d, and no checkpoint this trail verified has that size", size)
	}
	if !bytes.HasSuffix(raw, []byte("\n")) || bytes.Count(sigs, []byte("\n")) > 16 {
		return r.Fail(chain.Malformed, "cosignature does not hold signature lines")
	}
	if err := v.addCosigs(size, append(append([]byte(nil), raw...), sigs...)); err != nil {
		return r.Fail(chain.Forged, "witness %s: %v", fieldStr(e, "witness"), err)
	}
	return nil
}

// addCosigs verifies the cosignatures on msg (a checkpoint of the trail,
// with its signature lines and a witness's) and keeps those by the witness
// keys given.
func (v *Verifier) addCosigs(size uint64, msg []byte) error {
	if len(v.opts.Witnesses) == 0 {
		return nil
	}
	n, err := note.Open(msg, note.VerifierList(v.opts.Witnesses...))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		if errors.As(err, &unverified) {
			return nil // by witnesses not given
		}
		return fmt.Errorf("a cosignature by a witness key given does not verify over the checkpoint of tree size %d: the checkpoint was rewritten after the witness cosigned it (%v)", size, err)
	}
	if v.cosigs[size] == nil {
		v.cosigs[size] = map[string][]byte{}
	}
	for _, s := range n.Sigs {
		v.cosigs[size][fmt.Sprintf("%s+%08x", s.Name, s.Hash)] = []byte("— " + s.Name + " " + s.Base64 + "\n")
	}
	return nil
}

// witnessed finds the largest checkpoint cosigned by a quorum of the
// witness keys given.
func (v *Verifier) witnessed() error {
	quorum := max(v.opts.Quorum, 1)
	var best uint64
	found := false
	for size, by := range v.cosigs {
		if len(by) >= quorum && (!found || size > best) {
			best, found = size, true
		}
	}
	if !found {
		return &chain.Error{Problem: Unwitnessed, Source: v.source,
			Detail: fmt.Sprintf("no checkpoint in this trail, or given with -checkpoint, is cosigned by %d of the %d witness keys given: the trail may have been rewritten after the witnesses cosigned it (give the witness's latest checkpoint with -checkpoint)", quorum, len(v.opts.Witnesses))}
	}
	raw := append([]byte(nil), v.notes[best]...)
	for _, line := range v.cosigs[best] {
		if !bytes.Contains(raw, line) {
			raw = append(raw, line...)
		}
	}
	c, _ := ParseCheckpoint(v.notes[best])
	v.rep.Cosigned, v.rep.CosignedNote = c, raw
	if best < v.tree.End() {
		v.note("the last checkpoint cosigned by %d witnesses covers tree size %d of %d: the records after it are vouched for by the node's keys alone", quorum, best, v.tree.End())
	}
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

// verified is the last checkpoint the verifier checked: the tree it
// signs, and where it was read.
type verified struct {
	tree      *compact.Range
	size, seq uint64
	note      []byte // nil for the empty tree
	where     string
}

func (v *Verifier) ckptWhere() string {
	if v.ckpt.note == nil {
		return "the start of the log (no checkpoint verified)"
	}
	return v.ckpt.where
}

// openNote checks a checkpoint note with the current epoch's key.
func (v *Verifier) openNote(raw []byte) (Checkpoint, error) {
	c, err := Open(raw, v.keys[v.epoch()])
	if err != nil {
		return c, fmt.Errorf("not signed by the key of epoch %d (signature: %s): %v", v.epoch(), SignerOf(raw), err)
	}
	switch {
	case c.Origin != v.rep.Origin:
		return c, fmt.Errorf("checkpoint of log %q in the log %q", c.Origin, v.rep.Origin)
	case c.Epoch != v.epoch():
		return c, fmt.Errorf("says epoch %d, signed by the key of epoch %d", c.Epoch, v.epoch())
	}
	return c, nil
}

// certify takes the next epoch's key a checked checkpoint certifies.
func (v *Verifier) certify(c Checkpoint, raw []byte) error {
	if c.NextKey == "" {
		return nil
	}
	nk, err := note.NewVerifier(c.NextKey)
	if err != nil || nk.Name() != v.rep.Origin {
		return fmt.Errorf("next-key %q is not a key of this log", short(c.NextKey))
	}
	v.keys = append(v.keys, nk)
	v.rep.Certs = append(v.rep.Certs, raw)
	return nil
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

func parseLinks(e *audit.Event, size uint64) ([]recLink, error) {
	ckpts, segs := splitList(fieldStr(e, "checkpoints")), strings.Split(fieldStr(e, "segments"), ";")
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

// Close ends the verification: the trail must end with a checkpoint (or,
// Live, may hold records after it), and every external checkpoint must be
// consistent with it.
func (v *Verifier) Close() (Report, error) {
	v.endResend()
	v.rep.TreeSize = v.tree.End()
	v.rep.Epoch = v.epoch()
	for _, k := range v.keys {
		v.rep.Keys = append(v.rep.Keys, fmt.Sprintf("%s+%08x", k.Name(), k.KeyHash()))
	}
	if v.rep.Records == 0 {
		return v.rep, &chain.Error{Problem: chain.Missing, Source: v.source, Detail: "the trail holds no records"}
	}
	if v.gap != nil {
		return v.rep, v.gap
	}
	for _, l := range v.rep.Lost {
		if !accepted(v.opts.AcceptLoss, l.SeqRange) {
			return v.rep, &chain.Error{Problem: Lost, Source: v.source, Seq: l.At,
				Detail: fmt.Sprintf("seqs %d to %d cannot be vouched for: AuditRecovered at %s declares a crash, and this trail holds no record of them that a checkpoint covers. If that crash is known and the loss acceptable, verify with -accept-loss %s", l.From, l.To, l.Where, l.SeqRange)}
		}
		v.note("seqs %d to %d lost in a crash (AuditRecovered at %s): accepted", l.From, l.To, l.Where)
	}
	if n := len(v.since); n > 0 {
		first, last := v.since[0].seq, v.since[n-1].seq
		after := "no checkpoint"
		if v.ckpt.where != "" {
			after = "the last checkpoint, at " + v.ckpt.where
		}
		if !v.opts.Live {
			return v.rep, &chain.Error{Problem: Unsigned, Source: v.source, Seq: first,
				Detail: fmt.Sprintf("seqs %d to %d (%d records) after %s are covered by no signed checkpoint: appended by someone, or the host is still running or stopped without its last checkpoint (verify again after the next one, or use -live)", first, last, n, after)}
		}
		v.note("seqs %d to %d (%d records) after %s are not covered by a checkpoint yet (-live)", first, last, n, after)
	}
	for _, x := range v.opts.Checkpoints {
		if err := v.external(x); err != nil {
			return v.rep, err
		}
	}
	if len(v.opts.Witnesses) > 0 {
		if err := v.witnessed(); err != nil {
			return v.rep, err
		}
	}
	return v.rep, nil
}

func accepted(list []SeqRange, r SeqRange) bool {
	for _, a := range list {
		if a == r {
			return true
		}
	}
	return false
}

func (v *Verifier) external(x External) error {
	fail := func(p chain.Problem, format string, args ...any) error {
		return &chain.Error{Problem: p, Source: x.Name, Detail: fmt.Sprintf(format, args...)}
	}
	c, err := ParseCheckpoint(x.Note)
	if err != nil {
		return fail(chain.Malformed, "%v", err)
	}
	if c.Epoch >= uint64(len(v.keys)) {
		return fail(chain.Missing, "checkpoint of epoch %d, but the trail certifies keys up to epoch %d only and ends with %s: the trail was cut or rolled back", c.Epoch, v.epoch(), v.lastWhere)
	}
	if _, err := Open(x.Note, v.keys[c.Epoch]); err != nil {
		return fail(chain.Forged, "%v", err)
	}
	if c.Origin != v.rep.Origin {
		return fail(chain.Mismatch, "checkpoint of log %q, the trail is log %q", c.Origin, v.rep.Origin)
	}
	if c.Size > v.tree.End() {
		return fail(chain.Missing, "the checkpoint covers %d records, the trail's tree holds %d and ends with %s: records after it were cut, or the trail was rolled back", c.Size, v.tree.End(), v.lastWhere)
	}
	root, ok := v.rootsAt[c.Size]
	if !ok {
		return fail(chain.Missing, "records the checkpoint covers (tree size %d) are missing from the trail", c.Size)
	}
	if !bytes.Equal(root, c.Root) {
		return fail(chain.Mismatch, "the trail is not consistent with the checkpoint at tree size %d (the trail ends with %s): the trail was rolled back and rewritten, or forked", c.Size, v.lastWhere)
	}
	v.note("consistent with %s (tree size %d, epoch %d)", x.Name, c.Size, c.Epoch)
	// A witness's copy carries its cosignatures, over the same text.
	if err := v.addCosigs(c.Size, x.Note); err != nil {
		return fail(chain.Forged, "%v", err)
	}
	if _, ok := v.notes[c.Size]; !ok {
		v.notes[c.Size] = x.Note
	}
	return nil
}

func fieldStr(e *audit.Event, key string) string {
	for _, f := range e.Fields {
		if f.Key == key {
			if f.Value.Kind() == audit.KindString {
				return f.Value.String()
			}
		}
	}
	return ""
}

func fieldUint(e *audit.Event, key string) uint64 {
	for _, f := range e.Fields {
		if f.Key == key {
			if f.Value.Kind() == audit.KindUint {
				return f.Value.Uint()
			}
		}
	}
	return 0
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// OrderFiles sorts trail files by the seq of their first record, so that a
// rotated set, a copy and the files of several runs may be given in any
// order. A file whose first line is not a record keeps its place last, for
// the verifier to name.
func OrderFiles(paths []string) ([]string, error) {
	type keyed struct {
		path string
		seq  uint64
		ok   bool
	}
	ks := make([]keyed, 0, len(paths))
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("open trail: %w", err)
		}
		k := keyed{path: p}
		_ = chain.ReadRecords(chain.Source{Name: p, R: io.LimitReader(f, audit.MaxLineBytes+1)}, func(r chain.Record) error {
			k.seq, k.ok = r.Event.Seq, true
			return errStop
		})
		f.Close()
		ks = append(ks, k)
	}
	sort.SliceStable(ks, func(i, j int) bool {
		if ks[i].ok != ks[j].ok {
			return ks[i].ok
		}
		return ks[i].seq < ks[j].seq
	})
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.path
	}
	return out, nil
}

var errStop = fmt.Errorf("stop")

// VerifyFiles verifies the trail held in files, in any order.
func VerifyFiles(opts Options, paths ...string) (Report, error) {
	ordered, err := OrderFiles(paths)
	if err != nil {
		return Report{}, err
	}
	v := NewVerifier(opts)
	for _, p := range ordered {
		f, err := os.Open(p)
		if err != nil {
			return v.rep, fmt.Errorf("open trail: %w", err)
		}
		err = v.ReadFrom(chain.Source{Name: p, R: f})
		f.Close()
		if err != nil {
			return v.rep, err
		}
	}
	return v.Close()
}

// lost says whether rep explains seq as lost in a crash.
func lost(rep *Report, seq uint64) bool {
	for _, r := range rep.Lost {
		if seq >= r.From && seq <= r.To {
			return true
		}
	}
	return false
}

// Compare checks that a copy holds exactly the records of the trail, seq by
// seq (both verified with Options.Keep): a record either lacks is a cut or an
// insertion in one of them, unless that one explains it as lost in a crash
// (a note).
func Compare(tr, cp *Report, name string) ([]string, error) {
	a, b := tr.Seen, cp.Seen
	var notes []string
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j >= len(b) || i < len(a) && a[i].Seq < b[j].Seq:
			if lost(cp, a[i].Seq) {
				notes = append(notes, fmt.Sprintf("seq %d (%s:%d) is not in %s: lost there in a crash, as its AuditRecovered says", a[i].Seq, a[i].Source, a[i].Line, name))
				i++
				continue
			}
			return notes, &chain.Error{Problem: chain.Mismatch, Source: a[i].Source, Line: a[i].Line, Seq: a[i].Seq,
				Detail: fmt.Sprintf("the copy %s lacks this record", name)}
		case i >= len(a) || b[j].Seq < a[i].Seq:
			if lost(tr, b[j].Seq) {
				notes = append(notes, fmt.Sprintf("seq %d (%s:%d) is not in the trail: lost there in a crash, as its AuditRecovered says", b[j].Seq, b[j].Source, b[j].Line))
				j++
				continue
			}
			return notes, &chain.Error{Problem: chain.Mismatch, Source: b[j].Source, Line: b[j].Line, Seq: b[j].Seq,
				Detail: "the copy holds this record and the trail lacks it: records were cut from the trail"}
		case a[i].Hash != b[j].Hash:
			return notes, &chain.Error{Problem: chain.Mismatch, Source: b[j].Source, Line: b[j].Line, Seq: b[j].Seq,
				Detail: fmt.Sprintf("differs from the trail's record (%s:%d)", a[i].Source, a[i].Line)}
		}
		i, j = i+1, j+1
	}
	return notes, nil
}
