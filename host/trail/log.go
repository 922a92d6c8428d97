package trail

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audit/chain"
)

var rf = compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

// emptyRoot is the root of a tree with no leaves (RFC 6962: SHA-256 of "").
var emptyRoot = func() []byte { h := sha256.Sum256(nil); return h[:] }()

func rootOf(r *compact.Range) []byte {
	if r.End() == 0 {
		return emptyRoot
	}
	root, err := r.GetRootHash(nil)
	if err != nil {
		panic(fmt.Sprintf("trail: root of a range from 0: %v", err)) // only a range not starting at 0 fails
	}
	return root
}

// Limits end an epoch and trigger checkpoints.
type Limits struct {
	EpochEvents        uint64
	EpochDuration      time.Duration
	CheckpointEvents   uint64
	CheckpointInterval time.Duration
}

// Defaults: epochs follow journald's sealing interval; a checkpoint at
// least every 1,000 records or 10 seconds bounds what a crash leaves
// unvouched.
var DefaultLimits = Limits{EpochEvents: 10000, EpochDuration: 15 * time.Minute, CheckpointEvents: 1000, CheckpointInterval: 10 * time.Second}

func (l Limits) withDefaults() Limits {
	if l.EpochEvents == 0 {
		l.EpochEvents = DefaultLimits.EpochEvents
	}
	if l.EpochDuration <= 0 {
		l.EpochDuration = DefaultLimits.EpochDuration
	}
	if l.CheckpointEvents == 0 {
		l.CheckpointEvents = DefaultLimits.CheckpointEvents
	}
	if l.CheckpointInterval <= 0 {
		l.CheckpointInterval = DefaultLimits.CheckpointInterval
	}
	return l
}

// Origin is the checkpoint origin (and key name) of a worker's log.
func Origin(workerID string) string { return "vramward/" + workerID }

// maxLinks is how many of its last checkpoints the log keeps, each with
// the compact range of the leaves from it to the next. An AuditRecovered
// record carries them so that a verifier can walk from the last checkpoint
// it verified to the tree the host resumes from, checking every checkpoint
// (and every key it certifies) on the way: a crash may have kept that many
// checkpoints from a sink.
const maxLinks = 6

// Link is one checkpoint of the log's recent history and the leaves after
// it: Seg is the compact range from the checkpoint's tree size to the next
// link's (the last link's to the current tree). The first link of a young
// log is the empty tree (Size 0, no Note).
type Link struct {
	Seq  uint64   `json:"seq"` // the AuditCheckpoint record's seq; 0 for the empty tree
	Size uint64   `json:"size"`
	Note []byte   `json:"note"`
	Seg  [][]byte `json:"seg"` // compact range hashes
}

// State is what the host persists to continue the log. It holds the current
// epoch's key only; the key's secret is written by the store itself, never
// through this struct's fields.
type State struct {
	Origin       string
	Epoch        uint64
	Seq          uint64 // last seq assigned
	Prev         []byte // hash of the last record
	TreeSize     uint64
	Tree         [][]byte // compact range [0, TreeSize)
	EpochEvents  uint64
	EpochStarted time.Time
	// EpochElapsed is how long the host has run in the epoch, by its
	// monotonic clock: the epoch ends by it, so a wall clock set back
	// cannot keep a key alive. SavedAt is the wall clock when the state
	// was taken, to tell at the next start that the clock went back.
	EpochElapsed time.Duration
	SavedAt      time.Time
	// LastCheckpointSeq is the seq of the last AuditCheckpoint record.
	LastCheckpointSeq uint64
	// LastCheckpoint is that checkpoint's note.
	LastCheckpoint []byte
	// Links are the last checkpoints and the leaves between them, oldest
	// first (see Link).
	Links []Link
	// Witnesses are the witnesses' trees (see WitnessState).
	Witnesses []WitnessState
}

// Log seals records into the tree and signs checkpoints. It is not safe for
// concurrent use: the host's bus owns one, under its lock.
type Log struct {
	st        State
	link      *chain.Linker
	tree      *compact.Range
	links     []link // st.Links, live
	witnesses []*witnessed
	offers    []Offer
	// contentEnd is the tree size after the last record that is not the
	// log's own bookkeeping (a checkpoint, a witness's cosignature): a
	// checkpoint with nothing new for a witness is not offered to it, or
	// each cosignature recorded would call for the next.
	contentEnd uint64
	// witnessRetry asks for a checkpoint at the next checkpoint_interval
	// even with no record added: a witness missed the last one (down, or
	// it named another size), and an idle host would offer it nothing.
	witnessRetry bool
	key          *PrivateKey
	identity     *PrivateKey // the log's stable key; nil signs with the epoch key alone
	limits       Limits
	now          func() time.Time
	// wall reads the wall clock alone; the epoch's time is epochBase (what
	// earlier runs spent in it) plus now() since epochMark, which a real
	// clock measures monotonically. wallMark is the wall clock at
	// epochMark's reading or the last ClockJump check.
	wall                func() time.Time
	epochBase           time.Duration
	epochMark, wallMark time.Time
	monoMark            time.Time
	// resumeJump is how far the wall clock stood behind the saved state's
	// at Resume (zero when it did not).
	resumeJump time.Duration
	sinceCkpt  uint64    // leaves since the last checkpoint
	lastCkpt   time.Time // when the last checkpoint was made
	lastSize   uint64    // the tree size it covers
	// Fill sets the envelope (service id, actor) of the records the log
	// makes itself, as its owner does for every other record.
	Fill func(*audit.Event)
}

// New starts a log with a fresh first-epoch key; the caller publishes
// FirstKey's verifier key.
func New(origin string, limits Limits) (*Log, error) {
	k, err := GenerateKey(origin)
	if err != nil {
		return nil, err
	}
	l := &Log{st: State{Origin: origin, EpochStarted: time.Now()}, link: &chain.Linker{}, tree: rf.NewEmptyRange(0),
		links: []link{{seg: rf.NewEmptyRange(0)}}, key: k, limits: limits.withDefaults(), now: time.Now, lastCkpt: time.Now()}
	l.startClocks()
	return l, nil
}

// Resume continues a log from saved state and its current key.
func Resume(st State, key *PrivateKey, limits Limits) (*Log, error) {
	tree, err := rf.NewRange(0, st.TreeSize, st.Tree)
	if err != nil {
		return nil, fmt.Errorf("saved tree: %w", err)
	}
	if key.Name() != st.Origin {
		return nil, fmt.Errorf("saved key is for origin %q, the log is %q", key.Name(), st.Origin)
	}
	links, err := resumeLinks(st)
	if err != nil {
		return nil, fmt.Errorf("saved checkpoints: %w", err)
	}
	l := &Log{st: st, link: chain.Resume(st.Seq, st.Prev), tree: tree, links: links, key: key, limits: limits.withDefaults(), now: time.Now, lastCkpt: time.Now()}
	l.startClocks()
	l.resumeClocks()
	for _, ws := range st.Witnesses {
		w, err := resumeWitness(ws, st.TreeSize)
		if err != nil {
			return nil, fmt.Errorf("saved witness state: %w", err)
		}
		l.witnesses = append(l.witnesses, w)
	}
	l.st.Tree, l.st.Links, l.st.Witnesses = nil, nil, nil
	l.contentEnd = st.TreeSize
	// The size the last checkpoint signed, for the status view after a
	// restart (it showed 0 until this run's first checkpoint).
	if c, err := ParseCheckpoint(st.LastCheckpoint); err == nil {
		l.lastSize = c.Size
	}
	return l, nil
}

// link is a Link with its range live.
type link struct {
	seq, size uint64
	note      []byte
	seg       *compact.Range
}

// resumeLinks rebuilds the saved links. A state saved before links existed
// still resumes right after its last checkpoint record (the usual place of
// a save): its one link is that checkpoint and that record.
func resumeLinks(st State) ([]link, error) {
	if len(st.Links) == 0 {
		c, err := ParseCheckpoint(st.LastCheckpoint)
		if err != nil || c.Size+1 != st.TreeSize {
			return nil, nil // an AuditRecovered after this cannot be bound: verify says so
		}
		seg := rf.NewEmptyRange(c.Size)
		if err := seg.Append(st.Prev, nil); err != nil {
			return nil, err
		}
		return []link{{seq: st.LastCheckpointSeq, size: c.Size, note: st.LastCheckpoint, seg: seg}}, nil
	}
	links := make([]link, len(st.Links))
	for i, sl := range st.Links {
		end := st.TreeSize
		if i+1 < len(st.Links) {
			end = st.Links[i+1].Size
		}
		seg, err := rf.NewRange(sl.Size, end, sl.Seg)
		if err != nil {
			return nil, fmt.Errorf("link at tree size %d: %w", sl.Size, err)
		}
		links[i] = link{seq: sl.Seq, size: sl.Size, note: sl.Note, seg: seg}
	}
	return links, nil
}

// SetIdentity makes the log's identity key sign every checkpoint beside
// the epoch key.
func (l *Log) SetIdentity(k *PrivateKey) { l.identity = k }

// VerifierKey is the current epoch's public key.
func (l *Log) VerifierKey() string { return l.key.VerifierKey() }

// Key is the current epoch's key, for the store to persist.
func (l *Log) Key() *PrivateKey { return l.key }

// Seq is the last seq assigned.
func (l *Log) Seq() uint64 { return l.link.Seq() }

// Epoch is the current epoch.
func (l *Log) Epoch() uint64 { return l.st.Epoch }

// SetClock replaces the clock, for tests of time limits; the epoch's time
// is measured on it from now on.
func (l *Log) SetClock(now func() time.Time) {
	l.epochBase = l.epochElapsed()
	l.now = now
	l.epochMark = now()
}

// SetWallClock replaces the wall clock ClockJump compares with, for tests.
func (l *Log) SetWallClock(wall func() time.Time) {
	l.wall = wall
	l.wallMark, l.monoMark = wall(), l.now()
}

func (l *Log) startClocks() {
	l.wall = func() time.Time { return time.Now().Round(0) }
	l.epochMark = l.now()
	l.wallMark, l.monoMark = l.wall(), l.epochMark
}

// resumeClocks takes the epoch's time from the saved state: what earlier
// runs spent in it, or the wall clock since it began when that is more
// (the host was down meanwhile) — never less because the clock went back.
func (l *Log) resumeClocks() {
	now := l.wall()
	l.epochBase = l.st.EpochElapsed
	if since := now.Sub(l.st.EpochStarted); since > l.epochBase {
		l.epochBase = since
	}
	if !l.st.SavedAt.IsZero() && now.Before(l.st.SavedAt.Add(-clockTolerance)) {
		l.resumeJump = now.Sub(l.st.SavedAt)
	}
}

// clockTolerance is the wall clock's drift from the monotonic one that is
// not called a jump (NTP slews far less).
const clockTolerance = 2 * time.Second

func (l *Log) epochElapsed() time.Duration {
	return l.epochBase + max(l.now().Sub(l.epochMark), 0)
}

// ResumeJump is how far the wall clock stood behind the saved state's when
// the log resumed (negative), or zero.
func (l *Log) ResumeJump() time.Duration { return l.resumeJump }

// ClockJump reports how far the wall clock moved against the monotonic
// one since the last check (positive: forward), once it is more than a
// little; the next check measures from now.
func (l *Log) ClockJump() (time.Duration, bool) {
	wall, mono := l.wall(), l.now()
	skew := wall.Sub(l.wallMark) - mono.Sub(l.monoMark)
	if skew > -clockTolerance && skew < clockTolerance {
		return 0, false
	}
	l.wallMark, l.monoMark = wall, mono
	return skew, true
}

// Seal gives e the next seq and the chain, adds it to the tree, and returns
// its record (the line every sink receives and the chain covers).
func (l *Log) Seal(e *audit.Event) audit.Record { return l.sealAt(e, l.link.Seq()+1) }

func (l *Log) sealAt(e *audit.Event, seq uint64) audit.Record {
	r := l.link.LinkAt(e, seq, l.st.Epoch)
	l.addLeaf(e.Type, e.Chain.Hash)
	return r
}

// addLeaf adds a record's hash to the tree, the last link and the
// witnesses' ranges, and counts it.
func (l *Log) addLeaf(typ audit.Type, hash []byte) {
	if err := l.tree.Append(hash, nil); err != nil {
		panic(fmt.Sprintf("trail: append to a range from 0: %v", err)) // cannot fail for a well-formed hash
	}
	if n := len(l.links); n > 0 {
		if err := l.links[n-1].seg.Append(hash, nil); err != nil {
			panic(fmt.Sprintf("trail: append to a link: %v", err))
		}
	}
	l.appendToWitnesses(hash)
	if typ != audit.AuditCheckpoint && typ != audit.AuditCheckpointCosigned {
		l.contentEnd = l.tree.End()
	}
	l.st.EpochEvents++
	l.sinceCkpt++
}

// Due says whether a checkpoint is due (every CheckpointEvents records, or
// CheckpointInterval after the last when anything was added) and whether
// the epoch has ended (then the checkpoint must end it).
func (l *Log) Due() (checkpoint, endEpoch bool) {
	now := l.now()
	endEpoch = l.st.EpochEvents >= l.limits.EpochEvents || l.epochElapsed() >= l.limits.EpochDuration
	checkpoint = endEpoch || l.sinceCkpt >= l.limits.CheckpointEvents || ((l.sinceCkpt > 0 || l.witnessRetry) && now.Sub(l.lastCkpt) >= l.limits.CheckpointInterval)
	return checkpoint, endEpoch
}

// LastCheckpoint is the seq of the last checkpoint record, the tree size
// it signed and when (this run's; zero before its first).
func (l *Log) LastCheckpoint() (seq, size uint64, at time.Time) {
	if l.lastSize == 0 && l.st.LastCheckpointSeq == 0 {
		return 0, 0, time.Time{}
	}
	return l.st.LastCheckpointSeq, l.lastSize, l.lastCkpt
}

// Pending is the number of records since the last checkpoint.
func (l *Log) Pending() uint64 { return l.sinceCkpt }

// Checkpoint signs the tree of every record so far and seals the
// AuditCheckpoint record that carries it. With endEpoch the checkpoint
// certifies a fresh key for the next epoch, and the ending key is erased
// once it has signed.
func (l *Log) Checkpoint(endEpoch bool) (audit.Record, Checkpoint, error) {
	c := Checkpoint{Origin: l.st.Origin, Size: l.tree.End(), Root: rootOf(l.tree), Epoch: l.st.Epoch}
	var next *PrivateKey
	if endEpoch {
		var err error
		if next, err = GenerateKey(l.st.Origin); err != nil {
			return audit.Record{}, Checkpoint{}, err
		}
		c.NextKey = next.VerifierKey()
	}
	signers := []note.Signer{l.key}
	if l.identity != nil {
		signers = append(signers, l.identity)
	}
	if err := c.Sign(signers...); err != nil {
		if next != nil {
			next.Destroy()
		}
		return audit.Record{}, Checkpoint{}, err
	}
	e, err := audit.Make(audit.Actor{}, audit.AuditCheckpointFields{Note: encodeB64(c.Note), TreeSize: c.Size,
		RootHash: hex.EncodeToString(c.Root), NextKey: c.NextKey})
	if err != nil {
		return audit.Record{}, Checkpoint{}, err
	}
	if l.Fill != nil {
		l.Fill(&e)
	}
	l.offer(c.Note)
	l.links = append(l.links, link{seq: l.link.Seq() + 1, size: c.Size, note: c.Note, seg: rf.NewEmptyRange(c.Size)})
	if len(l.links) > maxLinks {
		l.links = append([]link(nil), l.links[len(l.links)-maxLinks:]...)
	}
	r := l.Seal(&e)
	l.st.LastCheckpointSeq, l.st.LastCheckpoint = e.Seq, c.Note
	l.sinceCkpt, l.lastCkpt, l.lastSize = 0, l.now(), c.Size
	if endEpoch {
		l.key.Destroy()
		l.key = next
		l.st.Epoch++
		l.st.EpochEvents = 0
		l.st.EpochStarted = l.wall()
		l.epochBase, l.epochMark = 0, l.now()
	}
	return r, c, nil
}

// State returns a copy of the state, for persisting.
func (l *Log) State() State {
	st := l.st
	st.EpochElapsed, st.SavedAt = l.epochElapsed(), l.wall()
	st.Seq, st.Prev = l.link.Seq(), append([]byte(nil), l.link.Prev()...)
	st.TreeSize = l.tree.End()
	for _, h := range l.tree.Hashes() {
		st.Tree = append(st.Tree, append([]byte(nil), h...))
	}
	st.Links = make([]Link, len(l.links))
	for i, k := range l.links {
		st.Links[i] = Link{Seq: k.seq, Size: k.size, Note: k.note, Seg: cloneHashes(k.seg)}
	}
	st.Witnesses = nil
	for _, w := range l.witnesses {
		st.Witnesses = append(st.Witnesses, w.state())
	}
	return st
}

func cloneHashes(r *compact.Range) [][]byte {
	out := make([][]byte, len(r.Hashes()))
	for i, h := range r.Hashes() {
		out[i] = append([]byte(nil), h...)
	}
	return out
}

// Recover records, after a crash, that the seqs after the last checkpoint
// up to reserved (every seq the crashed run may have used) cannot be
// vouched for: it seals an AuditRecovered record at reserved+1, linked to
// the last record the saved state holds. It carries the log's recent
// checkpoints and the compact ranges between them (see Link), so that a
// verifier continues only from a checkpoint it has verified, through
// checkpoints it checks, to the tree the host resumes from.
func (l *Log) Recover(reserved uint64, reason string) (audit.Record, error) {
	st := l.State()
	ckpts := make([]string, len(st.Links))
	segs := make([]string, len(st.Links))
	for i, k := range st.Links {
		ckpts[i] = strconv.FormatUint(k.Seq, 10) + ":" + encodeB64(k.Note)
		hs := make([]string, len(k.Seg))
		for j, h := range k.Seg {
			hs[j] = encodeB64(h)
		}
		segs[i] = strings.Join(hs, ",")
	}
	e, err := audit.Make(audit.Actor{}, audit.AuditRecoveredFields{
		FromSeq: st.LastCheckpointSeq + 1, ToSeq: max(reserved, st.Seq), Reason: reason,
		ResumeSeq: st.Seq, TreeSize: st.TreeSize,
		Checkpoints: strings.Join(ckpts, ","), Segments: strings.Join(segs, ";")})
	if err != nil {
		return audit.Record{}, err
	}
	if l.Fill != nil {
		l.Fill(&e)
	}
	return l.sealAt(&e, max(reserved, st.Seq)+1), nil
}

// PrepareSigning makes the nonces of the next checkpoint's signatures
// ahead of time (PrivateKey.Prepare): the host calls it once a checkpoint
// has left for the sinks, so that the next one signs quickly.
func (l *Log) PrepareSigning() error {
	if err := l.key.Prepare(); err != nil {
		return fmt.Errorf("prepare the epoch key's next signature: %w", err)
	}
	if l.identity != nil {
		if err := l.identity.Prepare(); err != nil {
			return fmt.Errorf("prepare the identity key's next signature: %w", err)
		}
	}
	return nil
}

// Destroy erases the current key and the identity key, at shutdown.
func (l *Log) Destroy() {
	l.key.Destroy()
	if l.identity != nil {
		l.identity.Destroy()
	}
}
