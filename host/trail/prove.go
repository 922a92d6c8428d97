package trail

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	tlogproof "github.com/transparency-dev/formats/proof"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/vramward/vramward/sdk/audit/chain"
)

// Proof shows that one record is in the log, in the C2SP tlog-proof format
// (c2sp.org/tlog-proof@v1): the record's leaf index, the hashes of RFC
// 6962's inclusion proof and the checkpoint it is proved against. The
// proof's extra data carries the record itself and, unless the checkpoint
// is cosigned by a witness, the checkpoints that certify the keys from the
// first epoch to the one that signed it, so the log's public key alone
// checks it.
type Proof struct {
	Record     []byte
	Index      uint64
	Hashes     [][]byte
	Checkpoint []byte
	Certs      [][]byte
}

// Prove builds the proof of the record with seq against the last
// checkpoint of a trail verified with Options.Keep, or, when the trail was
// verified with witness keys, against the last checkpoint they cosigned
// (with their cosignatures; no key certifications needed).
func Prove(rep *Report, seq uint64, record []byte) (Proof, error) {
	if rep.Checkpoints == 0 {
		return Proof{}, errors.New("the trail holds no checkpoint to prove against")
	}
	against, note := rep.Last, rep.Last.Note
	var certs [][]byte
	if rep.CosignedNote != nil {
		against, note = rep.Cosigned, rep.CosignedNote
	} else {
		certs = rep.Certs[:rep.Last.Epoch]
	}
	size := against.Size
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
		return Proof{}, fmt.Errorf("seq %d is not among the %d records the checkpoint it is proved against covers", seq, size)
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
	return Proof{Record: record, Index: uint64(index), Hashes: hashes, Checkpoint: note, Certs: certs}, nil
}

// extraHeader starts the proof's extra data.
const extraHeader = "vramward record proof v2"

// maxExtraBytes is what a tlog-proof reader takes on one line (the extra
// data is one base64 line).
const maxExtraBytes = 48 << 10

// Marshal writes the proof in the tlog-proof format.
func (p *Proof) Marshal() ([]byte, error) {
	var extra bytes.Buffer
	fmt.Fprintf(&extra, "%s\nrecord %s\n", extraHeader, p.Record)
	for _, c := range p.Certs {
		fmt.Fprintf(&extra, "cert %s\n", base64.StdEncoding.EncodeToString(c))
	}
	if extra.Len() > maxExtraBytes {
		return nil, fmt.Errorf("the record and its %d key certifications take %d bytes, more than a tlog-proof line holds: prove against a witness's cosigned checkpoint (-witness-key), which needs none", len(p.Certs), extra.Len())
	}
	tp := tlogproof.TLogProof{Index: p.Index, Checkpoint: p.Checkpoint, ExtraData: extra.Bytes()}
	for _, h := range p.Hashes {
		tp.Hashes = append(tp.Hashes, [32]byte(h))
	}
	return tp.Marshal(), nil
}

// ParseProof reads what Marshal writes.
func ParseProof(data []byte) (Proof, error) {
	var tp tlogproof.TLogProof
	if err := tp.Unmarshal(data); err != nil {
		return Proof{}, fmt.Errorf("not a tlog-proof: %w", err)
	}
	p := Proof{Index: tp.Index, Checkpoint: tp.Checkpoint}
	for _, h := range tp.Hashes {
		p.Hashes = append(p.Hashes, append([]byte(nil), h[:]...))
	}
	lines := strings.Split(strings.TrimSuffix(string(tp.ExtraData), "\n"), "\n")
	if len(lines) < 2 || lines[0] != extraHeader {
		return p, fmt.Errorf("the proof's extra data is not a vramward record (want the first line %q)", extraHeader)
	}
	for n, line := range lines[1:] {
		key, val, _ := strings.Cut(line, " ")
		switch key {
		case "record":
			p.Record = []byte(val)
		case "cert":
			b, err := base64.StdEncoding.DecodeString(val)
			if err != nil {
				return p, fmt.Errorf("extra line %d: %v", n+2, err)
			}
			p.Certs = append(p.Certs, b)
		default:
			return p, fmt.Errorf("extra line %d: unknown", n+2)
		}
	}
	if p.Record == nil || len(p.Checkpoint) == 0 {
		return p, errors.New("proof lacks its record or checkpoint")
	}
	return p, nil
}

// Check verifies the proof with the log's public keys: with witness keys,
// the checkpoint must carry a cosignature by quorum of them and the log's
// identity signature; otherwise the key certifications from the first
// epoch to the checkpoint's and its epoch signature. Then the record's own
// hash and its inclusion in the checkpoint's tree.
func (p *Proof) Check(keys PublicKeys, witnesses []note.Verifier, quorum int) (Checkpoint, error) {
	var c Checkpoint
	var err error
	if len(witnesses) > 0 {
		if keys.Identity == nil {
			return Checkpoint{}, errors.New("checking a cosigned checkpoint needs the log's identity key (the public key file's identity line)")
		}
		if c, err = Open(p.Checkpoint, keys.Identity); err != nil {
			return Checkpoint{}, fmt.Errorf("checkpoint: %w", err)
		}
		n, err := note.Open(p.Checkpoint, note.VerifierList(witnesses...))
		if err != nil || len(n.Sigs) < max(quorum, 1) {
			return Checkpoint{}, fmt.Errorf("checkpoint is not cosigned by %d of the witness keys given", max(quorum, 1))
		}
	} else {
		k := keys.First
		for i, raw := range p.Certs {
			cc, err := Open(raw, k)
			if err != nil {
				return Checkpoint{}, fmt.Errorf("key certification %d: %w", i, err)
			}
			if cc.Epoch != uint64(i) || cc.NextKey == "" {
				return Checkpoint{}, fmt.Errorf("key certification %d is not epoch %d's end", i, i)
			}
			if k, err = note.NewVerifier(cc.NextKey); err != nil || k.Name() != keys.First.Name() {
				return Checkpoint{}, fmt.Errorf("key certification %d names no key of this log", i)
			}
		}
		if c, err = Open(p.Checkpoint, k); err != nil {
			return Checkpoint{}, fmt.Errorf("checkpoint: %w", err)
		}
		if c.Epoch != uint64(len(p.Certs)) {
			return Checkpoint{}, fmt.Errorf("checkpoint of epoch %d, with %d key certifications", c.Epoch, len(p.Certs))
		}
	}
	if c.Origin != keys.First.Name() {
		return Checkpoint{}, fmt.Errorf("checkpoint of log %q", c.Origin)
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
