package trail

import (
	"bytes"
	"fmt"

	"golang.org/x/mod/sumdb/note"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audit/chain"
)

// RollForward continues a log resumed from a saved state over records a
// sink holds past it, up to the last checkpoint among them that this
// log's current key signed over exactly those records. It is how a start
// after a power cut catches up with a checkpoint that reached a sink's
// disk while the state's fdatasync did not: continuing from the older
// state would fork the log at that checkpoint, and verify would call the
// recovery forged.
//
// records must follow the saved state in seq order (the first at Seq()+1);
// the first that does not (a gap, a broken link, another epoch, a
// shortened record) ends the walk. Nothing after the last checkpoint that
// verifies is taken: without a signature over them, records a sink holds
// are only its word, and a hostile sink could have written them. Nor is a
// checkpoint that ends the epoch: the next key it certifies is in no state
// this log resumed from (the host keeps one on the node until the state
// holding the key is durable). It
// returns how many records the log took (0 when none) and the seq of the
// checkpoint it reached.
func (l *Log) RollForward(records []chain.Record) (taken int, checkpointSeq uint64, err error) {
	epochKey, err := note.NewVerifier(l.key.VerifierKey())
	if err != nil {
		return 0, 0, fmt.Errorf("roll forward: the epoch key: %w", err)
	}
	// A dry run on copies first: the tree cannot take back a leaf.
	seq, prev, tree := l.link.Seq(), l.link.Prev(), cloneRange(l.tree)
	upTo := -1
	for i := range records {
		r := &records[i]
		e := &r.Event
		if r.Shortened || e.Seq != seq+1 || !bytes.Equal(e.Chain.Prev, prev) || e.Chain.Epoch != l.st.Epoch {
			break
		}
		if e.Type == audit.AuditCheckpoint {
			c, err := checkpointOf(e, epochKey)
			if err != nil {
				break
			}
			if c.Origin != l.st.Origin || c.Epoch != l.st.Epoch || c.NextKey != "" || c.Size != tree.End() || !bytes.Equal(c.Root, rootOf(tree)) {
				// Not over this tree; or an epoch's end, whose next key
				// only the lost state held: the log could not sign on.
				break
			}
			upTo = i
		}
		if err := tree.Append(r.Hash, nil); err != nil {
			return 0, 0, fmt.Errorf("roll forward: %w", err)
		}
		seq, prev = e.Seq, r.Hash
	}
	for i := 0; i <= upTo; i++ {
		l.replay(&records[i])
	}
	if upTo < 0 {
		return 0, 0, nil
	}
	return upTo + 1, records[upTo].Event.Seq, nil
}

// checkpointOf opens the note an AuditCheckpoint record carries, signed by
// key, and checks that the record's fields say what the note says.
func checkpointOf(e *audit.Event, key note.Verifier) (Checkpoint, error) {
	var f audit.AuditCheckpointFields
	if err := audit.Decode(e, &f); err != nil {
		return Checkpoint{}, err
	}
	raw, err := decodeB64(f.Note)
	if err != nil {
		return Checkpoint{}, err
	}
	c, err := Open(raw, key)
	if err != nil {
		return Checkpoint{}, err
	}
	if f.TreeSize != c.Size || f.NextKey != c.NextKey {
		return Checkpoint{}, fmt.Errorf("tree_size or next_key differ from the signed note")
	}
	c.Note = raw
	return c, nil
}

// replay takes one record RollForward checked as if this log had sealed
// it: the same leaf, links and counts as Seal and Checkpoint leave.
func (l *Log) replay(r *chain.Record) {
	e := &r.Event
	if e.Type == audit.AuditCheckpoint {
		var f audit.AuditCheckpointFields
		_ = audit.Decode(e, &f) // checked by RollForward
		raw, _ := decodeB64(f.Note)
		l.links = append(l.links, link{seq: e.Seq, size: f.TreeSize, note: raw, seg: rf.NewEmptyRange(f.TreeSize)})
		if len(l.links) > maxLinks {
			l.links = append([]link(nil), l.links[len(l.links)-maxLinks:]...)
		}
		l.st.LastCheckpointSeq, l.st.LastCheckpoint = e.Seq, raw
		l.lastCkpt, l.lastSize = l.now(), f.TreeSize
	}
	l.addLeaf(e.Type, r.Hash)
	if e.Type == audit.AuditCheckpoint {
		l.sinceCkpt = 0 // the checkpoint's own record is not pending
	}
	l.link = chain.Resume(e.Seq, r.Hash)
}
