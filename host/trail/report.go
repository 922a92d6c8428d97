package trail

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/vramward/vramward/sdk/audit"
)

// What verification reports: the trail's extent, its epochs and keys,
// what it accepted as lost, and why it failed.

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

// Leaf is one leaf of the tree.
type Leaf struct {
	Index uint64
	Seq   uint64
	Hash  []byte
}

func accepted(list []SeqRange, r SeqRange) bool {
	for _, a := range list {
		if a == r {
			return true
		}
	}
	return false
}
