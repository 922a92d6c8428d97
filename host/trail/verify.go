package trail

import (
	"bytes"
	"encoding/hex"
	"fmt"
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

// Lost is the problem of seqs a crash took, not accepted by the operator.
const Lost chain.Problem = "lost"

// Unwitnessed is the problem of a trail no quorum of witnesses cosigned.
const Unwitnessed chain.Problem = "unwitnessed"

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
	var f audit.AuditCheckpointFields
	if err := audit.Decode(e, &f); err != nil {
		return r.Fail(chain.Malformed, "%v", err)
	}
	raw, err := decodeB64(f.Note)
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
	case f.TreeSize != c.Size || f.RootHash != hex.EncodeToString(c.Root) || f.NextKey != c.NextKey:
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

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}
