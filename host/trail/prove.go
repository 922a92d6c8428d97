package trail

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/vramward/vramward/sdk/audit/chain"
)

// Proof shows that one record is in the log: the record, its leaf index, the
// hashes of RFC 6962's inclusion proof against a signed checkpoint, and the
// checkpoints that certify the keys from the first epoch to the one that
// signed it, so the log's public key alone checks it.
type Proof struct {
	Record     []byte
	Index      uint64
	Hashes     [][]byte
	Checkpoint []byte
	Certs      [][]byte
}

// Prove builds the proof of the record with seq against the last
// checkpoint of a trail verified with Options.Keep.
func Prove(rep *Report, seq uint64, record []byte) (Proof, error) {
	if rep.Checkpoints == 0 {
		return Proof{}, errors.New("the trail holds no checkpoint to prove against")
	}
	size := rep.Last.Size
	byIndex := make(map[uint64][]byte, len(rep.Leaves))
	index := int64(-1)
	for _, l := range rep.Leaves {
		if l.Index < size {
			byIndex[l.Index] = l.Hash
			if l.Seq == seq {
				index = int64(l.Index)
			}
		}
	}
	if index < 0 {
		return Proof{}, fmt.Errorf("seq %d is not among the %d records the last checkpoint (seq %d) covers", seq, size, rep.LastAt)
	}
	nodes, err := proof.Inclusion(uint64(index), size)
	if err != nil {
		return Proof{}, err
	}
	hashes := make([][]byte, 0, len(nodes.IDs))
	for _, id := range nodes.IDs {
		// Every node of the list is a perfect subtree inside the tree.
		begin, end := id.Coverage()
		r := rf.NewEmptyRange(begin)
		for i := begin; i < end; i++ {
			h := byIndex[i]
			if h == nil {
				return Proof{}, fmt.Errorf("the proof needs leaf %d, lost in a crash", i)
			}
			if err := r.Append(h, nil); err != nil {
				return Proof{}, err
			}
		}
		if len(r.Hashes()) != 1 {
			return Proof{}, fmt.Errorf("proof node %v is not a perfect subtree", id)
		}
		hashes = append(hashes, r.Hashes()[0])
	}
	if hashes, err = nodes.Rehash(hashes, rfc6962.DefaultHasher.HashChildren); err != nil {
		return Proof{}, err
	}
	return Proof{Record: record, Index: uint64(index), Hashes: hashes, Checkpoint: rep.Last.Note, Certs: rep.Certs[:rep.Last.Epoch]}, nil
}

const proofHeader = "vramward inclusion proof v1"

// Marshal writes the proof as text: a header, the record, the index, the
// proof hashes, then the notes, each introduced by a line of its own.
func (p *Proof) Marshal() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\nrecord %s\nindex %d\n", proofHeader, p.Record, p.Index)
	for _, h := range p.Hashes {
		fmt.Fprintf(&b, "hash %s\n", base64.StdEncoding.EncodeToString(h))
	}
	for _, c := range p.Certs {
		fmt.Fprintf(&b, "cert %s\n", base64.StdEncoding.EncodeToString(c))
	}
	fmt.Fprintf(&b, "checkpoint %s\n", base64.StdEncoding.EncodeToString(p.Checkpoint))
	return b.Bytes()
}

// ParseProof reads what Marshal writes.
func ParseProof(data []byte) (Proof, error) {
	var p Proof
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) == 0 || lines[0] != proofHeader {
		return p, fmt.Errorf("not a proof (want the first line %q)", proofHeader)
	}
	for n, line := range lines[1:] {
		key, val, _ := strings.Cut(line, " ")
		var err error
		switch key {
		case "record":
			p.Record = []byte(val)
		case "index":
			p.Index, err = strconv.ParseUint(val, 10, 64)
		case "hash", "cert", "checkpoint":
			var b []byte
			if b, err = base64.StdEncoding.DecodeString(val); err == nil {
				switch key {
				case "hash":
					p.Hashes = append(p.Hashes, b)
				case "cert":
					p.Certs = append(p.Certs, b)
				default:
					p.Checkpoint = b
				}
			}
		default:
			err = errors.New("unknown line")
		}
		if err != nil {
			return p, fmt.Errorf("proof line %d: %v", n+2, err)
		}
	}
	if p.Record == nil || p.Checkpoint == nil {
		return p, errors.New("proof lacks its record or checkpoint")
	}
	return p, nil
}

// Check verifies the proof with the log's first public key alone: the key
// certifications up to the checkpoint's epoch, the checkpoint's signature,
// the record's own hash and its inclusion in the checkpoint's tree.
func (p *Proof) Check(key note.Verifier) (Checkpoint, error) {
	k := key
	for i, raw := range p.Certs {
		c, err := Open(raw, k)
		if err != nil {
			return Checkpoint{}, fmt.Errorf("key certification %d: %w", i, err)
		}
		if c.Epoch != uint64(i) || c.NextKey == "" {
			return Checkpoint{}, fmt.Errorf("key certification %d is not epoch %d's end", i, i)
		}
		if k, err = note.NewVerifier(c.NextKey); err != nil || k.Name() != key.Name() {
			return Checkpoint{}, fmt.Errorf("key certification %d names no key of this log", i)
		}
	}
	c, err := Open(p.Checkpoint, k)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint: %w", err)
	}
	if c.Epoch != uint64(len(p.Certs)) || c.Origin != key.Name() {
		return Checkpoint{}, fmt.Errorf("checkpoint of epoch %d of log %q", c.Epoch, c.Origin)
	}
	r, perr := chain.Check(p.Record)
	if perr != nil {
		return Checkpoint{}, fmt.Errorf("record: %v", perr)
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, p.Index, c.Size, r.Hash, p.Hashes, c.Root); err != nil {
		return Checkpoint{}, fmt.Errorf("record seq %d is not in the checkpoint's tree: %w", r.Event.Seq, err)
	}
	return c, nil
}
