// Package chain is the link layer of the audit trail: what every record
// carries and anyone can check without a key.
//
// Each record holds chain {epoch, prev, hash}: hash is the record's RFC 6962
// leaf hash, SHA-256(0x00 || hash input), where the hash input is the
// record's JSON line without chain.hash (Event.AppendHashInput); prev is the
// previous record's hash. A hash needs no secret, so links alone prove nothing against someone
// who can rewrite the file: the host's signed checkpoints over the Merkle tree
// of these hashes do (see the host's trail package). What links give is
// locality: the first record that is edited, missing or out of place is named
// with its seq and line.
package chain

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/vramward/vramward/sdk/audit"
)

// HashSize is the size of a record hash.
const HashSize = sha256.Size

// LeafHash is RFC 6962's hash of a leaf: SHA-256 of 0x00 and the data.
func LeafHash(data []byte) []byte {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(data)
	return h.Sum(make([]byte, 0, HashSize))
}

// Hash returns e's record hash over its hash input.
func Hash(e *audit.Event) []byte {
	var buf [1024]byte
	return LeafHash(e.AppendHashInput(buf[:0]))
}

// A hash input ends with chain.prev and recordEnd; closing it with hashKey,
// the hash in hex and recordEnd gives exactly AppendJSON's record.
const (
	recordEnd = `"}}`
	hashKey   = `","hash":"`
)

// record turns a hash input, which it owns, into the record line, given its
// hash: the fields are encoded once, for the hash and for the line.
func record(input, hash []byte) []byte {
	line := input[:len(input)-len(recordEnd)]
	line = append(line, hashKey...)
	line = hex.AppendEncode(line, hash)
	return append(line, recordEnd...)
}

// Linker assigns seq and the chain to records, one at a time, the way the
// host does. It is not safe for concurrent use.
type Linker struct {
	seq  uint64
	prev []byte
}

// Resume continues a chain after the record with seq and hash prev.
func Resume(seq uint64, prev []byte) *Linker {
	return &Linker{seq: seq, prev: append([]byte(nil), prev...)}
}

// Link gives e the next seq, epoch and the link to the previous record,
// and returns its record.
func (l *Linker) Link(e *audit.Event, epoch uint64) audit.Record {
	return l.LinkAt(e, l.seq+1, epoch)
}

// LinkAt links e at seq, which may skip ahead of the last one (a host
// resuming past the seqs a crashed run may have used), and returns its
// record: the event and its line, encoded once (its hash input, closed with
// the hash).
func (l *Linker) LinkAt(e *audit.Event, seq, epoch uint64) audit.Record {
	l.seq = seq
	e.Seq = seq
	e.Chain = audit.Chain{Epoch: epoch, Prev: l.prev}
	input := e.AppendHashInput(make([]byte, 0, 512))
	e.Chain.Hash = LeafHash(input)
	l.prev = e.Chain.Hash
	return audit.Record{Event: *e, Line: record(input, e.Chain.Hash)}
}

// Seq is the last seq assigned.
func (l *Linker) Seq() uint64 { return l.seq }

// Prev is the hash of the last record linked.
func (l *Linker) Prev() []byte { return l.prev }
