// Package chain is the link layer of the audit trail: what every record
// carries and anyone can check without a key.
//
// Each record holds chain {epoch, prev, hash}: hash is the record's RFC 6962
// leaf hash, SHA-256(0x00 || canonical bytes), where the canonical bytes are
// the record's JSON line without chain.hash; prev is the previous record's
// hash. A hash needs no secret, so links alone prove nothing against someone
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

// Hash returns e's record hash over its canonical bytes.
func Hash(e *audit.Event) []byte {
	var buf [1024]byte
	return LeafHash(e.AppendCanonical(buf[:0]))
}

// hashTail closes a canonical encoding (which ends with chain.prev) with
// chain.hash: canonical[:len-len(canonicalEnd)] + hashKey + hex + recordEnd
// is exactly AppendJSON's record.
const (
	canonicalEnd = `"}}`
	hashKey      = `","hash":"`
)

// record turns e's canonical bytes, which it owns, into its record line,
// given its hash: the fields are encoded once, for the hash and the line.
func record(canonical, hash []byte) []byte {
	line := canonical[:len(canonical)-len(canonicalEnd)]
	line = append(line, hashKey...)
	line = hex.AppendEncode(line, hash)
	return append(line, canonicalEnd...)
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
// record: the event and its line, encoded once (the bytes its hash covers,
// closed with the hash).
func (l *Linker) LinkAt(e *audit.Event, seq, epoch uint64) audit.Record {
	l.seq = seq
	e.Seq = seq
	e.Chain = audit.Chain{Epoch: epoch, Prev: l.prev}
	canonical := e.AppendCanonical(make([]byte, 0, 512))
	e.Chain.Hash = LeafHash(canonical)
	l.prev = e.Chain.Hash
	return audit.Record{Event: *e, Line: record(canonical, e.Chain.Hash)}
}

// Seq is the last seq assigned.
func (l *Linker) Seq() uint64 { return l.seq }

// Prev is the hash of the last record linked.
func (l *Linker) Prev() []byte { return l.prev }
