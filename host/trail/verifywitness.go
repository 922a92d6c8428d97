package trail

import (
	"bytes"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/note"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audit/chain"
)

// Witness cosignatures: each must verify over the checkpoint of its size,
// and a quorum of the witnesses given must have cosigned one.

// cosigned checks an AuditCheckpointCosigned record: a cosignature by a
// witness key given must verify over the trail's checkpoint of its size.
func (v *Verifier) cosigned(r *chain.Record) error {
	var f audit.AuditCheckpointCosignedFields
	if err := audit.Decode(&r.Event, &f); err != nil {
		return r.Fail(chain.Malformed, "%v", err)
	}
	size := f.TreeSize
	sigs, err := decodeB64(f.Cosignature)
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
		return r.Fail(chain.Forged, "witness %s: %v", f.Witness, err)
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
