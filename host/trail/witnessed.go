package trail

import (
	"fmt"

	"github.com/transparency-dev/merkle/compact"
)

// WitnessState is what the log keeps for one witness, so that it can
// always prove consistency from the tree the witness last cosigned to a new
// checkpoint without holding any leaf: that tree's size and compact range
// (Base, the leaves [0, Size)) and the compact range of every leaf since
// (Tail). Pending are the trees offered to the witness whose answer the
// log has not had (lost in a timeout or a crash), with the same two ranges
// each: the witness may hold any of them, and says which in a 409.
type WitnessState struct {
	Name    string         `json:"name"`
	Size    uint64         `json:"size"`
	Base    [][]byte       `json:"base"`
	Tail    [][]byte       `json:"tail"`
	Pending []WitnessState `json:"pending,omitempty"`
}

// maxPending bounds the unanswered offers a witness's state keeps.
const maxPending = 4

// Offer is a checkpoint to submit to a witness: its note, the size the
// witness is believed to hold and the two compact ranges the consistency
// proof is made from (see ConsistencyProof).
type Offer struct {
	Witness    string
	Checkpoint []byte
	OldSize    uint64
	Size       uint64
	Base, Seg  *compact.Range
}

// Proof is the consistency proof from OldSize to Size.
func (o *Offer) Proof() ([][]byte, error) { return ConsistencyProof(o.Base, o.Seg) }

type witnessed struct {
	name       string
	size       uint64
	base, tail *compact.Range
	cands      []*witnessed // offered, not answered (see WitnessState.Pending)
	inflight   bool         // an offer is out: the next waits for its answer
	refused    bool         // refused a checkpoint as inconsistent: offered nothing more
}

// SetWitnesses names the witnesses the log offers its checkpoints to. A
// witness the saved state knew keeps its place; a new one starts from the
// empty tree (its first offer carries no proof).
func (l *Log) SetWitnesses(names []string) {
	old := map[string]*witnessed{}
	for _, w := range l.witnesses {
		old[w.name] = w
	}
	l.witnesses = nil
	for _, n := range names {
		w := old[n]
		if w == nil {
			w = &witnessed{name: n, base: rf.NewEmptyRange(0), tail: cloneRange(l.tree)}
		}
		l.witnesses = append(l.witnesses, w)
	}
}

// TakeOffers returns the checkpoint the log last made for each witness that
// has no offer waiting for an answer (an offer answered neither way is not
// repeated: the next checkpoint is offered instead).
func (l *Log) TakeOffers() []Offer {
	offers := l.offers
	l.offers = nil
	return offers
}

// offer is called by Checkpoint with the tree the note signs, before the
// checkpoint's own record is sealed.
func (l *Log) offer(note []byte) {
	l.offers = l.offers[:0]
	l.witnessRetry = false
	for _, w := range l.witnesses {
		if w.inflight || w.refused || l.contentEnd <= w.size {
			continue
		}
		seg := cloneRange(w.tail)
		full := cloneRange(w.base)
		if err := full.AppendRange(seg, nil); err != nil {
			panic(fmt.Sprintf("trail: witness ranges: %v", err)) // base ends where tail begins
		}
		w.cands = append(w.cands, &witnessed{size: l.tree.End(), base: full, tail: rf.NewEmptyRange(l.tree.End())})
		if len(w.cands) > maxPending {
			w.cands = w.cands[len(w.cands)-maxPending:]
		}
		w.inflight = true
		l.offers = append(l.offers, Offer{Witness: w.name, Checkpoint: note, OldSize: w.size, Size: l.tree.End(), Base: cloneRange(w.base), Seg: seg})
	}
}

func (l *Log) witness(name string) *witnessed {
	for _, w := range l.witnesses {
		if w.name == name {
			return w
		}
	}
	return nil
}

// adopt takes the offered tree of size as the witness's.
func (w *witnessed) adopt(size uint64) bool {
	for i, c := range w.cands {
		if c.size == size {
			w.size, w.base, w.tail = c.size, c.base, c.tail
			w.cands = append([]*witnessed(nil), w.cands[i+1:]...)
			return true
		}
	}
	return false
}

// Cosigned records that the witness cosigned the checkpoint of size.
func (l *Log) Cosigned(name string, size uint64) {
	if w := l.witness(name); w != nil {
		w.inflight = false
		w.adopt(size)
	}
}

// OfferFailed records that an offer got no answer (the witness down, a
// timeout): the next checkpoint is offered from the same old size, and the
// witness may still hold the one offered.
func (l *Log) OfferFailed(name string) {
	if w := l.witness(name); w != nil {
		w.inflight = false
		l.witnessRetry = true
	}
}

// Conflict takes a witness's 409, which names the size it holds. It
// returns false when the log cannot prove consistency from that size (the
// witness holds a tree this log never offered it, or the same size with
// another root): the witness is then offered nothing more.
func (l *Log) Conflict(name string, size uint64, sameSize bool) bool {
	w := l.witness(name)
	if w == nil {
		return false
	}
	w.inflight = false
	switch {
	case sameSize:
		w.refused = true
	case size == w.size || w.adopt(size):
		// A tree offered before, whose answer was lost.
	case size == 0:
		// A witness that never cosigned for this log (or lost its state).
		w.size, w.base, w.tail, w.cands = 0, rf.NewEmptyRange(0), cloneRange(l.tree), nil
	default:
		w.refused = true
	}
	if !w.refused {
		l.witnessRetry = true
	}
	return !w.refused
}

// Refuse records that the witness refused a checkpoint as inconsistent.
func (l *Log) Refuse(name string) {
	if w := l.witness(name); w != nil {
		w.refused, w.inflight = true, false
	}
}

// appendToWitnesses gives every witness's ranges the new leaf.
func (l *Log) appendToWitnesses(hash []byte) {
	for _, w := range l.witnesses {
		if err := w.tail.Append(hash, nil); err != nil {
			panic(fmt.Sprintf("trail: witness tail: %v", err))
		}
		for _, c := range w.cands {
			if err := c.tail.Append(hash, nil); err != nil {
				panic(fmt.Sprintf("trail: witness tail: %v", err))
			}
		}
	}
}

func (w *witnessed) state() WitnessState {
	s := WitnessState{Name: w.name, Size: w.size, Base: cloneHashes(w.base), Tail: cloneHashes(w.tail)}
	for _, c := range w.cands {
		s.Pending = append(s.Pending, c.state())
	}
	return s
}

// resumeWitness rebuilds a saved witness's ranges; end is the saved tree's size.
func resumeWitness(s WitnessState, end uint64) (*witnessed, error) {
	base, err := rf.NewRange(0, s.Size, s.Base)
	if err != nil {
		return nil, fmt.Errorf("witness %s: %w", s.Name, err)
	}
	tail, err := rf.NewRange(s.Size, end, s.Tail)
	if err != nil {
		return nil, fmt.Errorf("witness %s: %w", s.Name, err)
	}
	w := &witnessed{name: s.Name, size: s.Size, base: base, tail: tail}
	for _, ps := range s.Pending {
		c, err := resumeWitness(ps, end)
		if err != nil {
			return nil, err
		}
		w.cands = append(w.cands, c)
	}
	return w, nil
}
