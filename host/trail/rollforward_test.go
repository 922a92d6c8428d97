package trail

import (
	"bytes"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audit/chain"
)

// A power cut after a sink's fsync of a checkpoint and before the state's
// fdatasync: the sink holds records and a checkpoint past the state the
// next start resumes from.

// longEpochs keep these tests inside one epoch.
var longEpochs = Limits{EpochEvents: 1000, EpochDuration: time.Hour, CheckpointEvents: 4, CheckpointInterval: time.Hour}

// cut is a log's run up to a power cut.
type cut struct {
	l   *Log
	key note.Verifier
	// before are the records up to the state the disk kept, kept that
	// state; after are the records past it that reached a sink: two, a
	// checkpoint over them and one more. atCheckpoint is the log's state
	// right after that checkpoint.
	before, after [][]byte
	kept          State
	atCheckpoint  State
}

// powerCut runs a log, saves its state (what the disk kept), then seals
// what reaches a sink only.
func powerCut(t testing.TB) cut {
	t.Helper()
	l, key, before := testLog(t, 5, longEpochs)
	kept := l.State()
	var after [][]byte
	for i := 0; i < 2; i++ {
		e, _ := audit.New(audit.SealVerified, audit.Actor{}, audit.Str("shard_id", "x"), audit.Uint("gpu_device", uint64(i)))
		after = append(after, l.Seal(&e).Line)
	}
	c, _, err := l.Checkpoint(false)
	if err != nil {
		t.Fatal(err)
	}
	after = append(after, c.Line)
	atCheckpoint := l.State()
	e, _ := audit.New(audit.SealVerified, audit.Actor{}, audit.Str("shard_id", "unsigned"), audit.Uint("gpu_device", 9))
	after = append(after, l.Seal(&e).Line)
	return cut{l: l, key: key, before: before, after: after, kept: kept, atCheckpoint: atCheckpoint}
}

// concat is a fresh slice of the lines of each part in turn.
func concat(parts ...[][]byte) [][]byte {
	var out [][]byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func checked(t *testing.T, lines [][]byte) []chain.Record {
	t.Helper()
	var out []chain.Record
	for _, line := range lines {
		r, err := chain.Check(line)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func TestRollForwardTakesTheSinksCheckpoint(t *testing.T) {
	pc := powerCut(t)
	l, kept, after, want := pc.l, pc.kept, pc.after, pc.atCheckpoint
	next := stolen(t, l, kept)
	taken, seq, err := next.RollForward(checked(t, after))
	if err != nil {
		t.Fatal(err)
	}
	if taken != 3 || seq != want.LastCheckpointSeq {
		t.Fatalf("took %d records up to seq %d, want 3 up to the checkpoint at seq %d", taken, seq, want.LastCheckpointSeq)
	}
	got := next.State()
	if got.Seq != want.Seq || string(got.Prev) != string(want.Prev) || got.TreeSize != want.TreeSize ||
		string(got.LastCheckpoint) != string(want.LastCheckpoint) || got.EpochEvents != want.EpochEvents || len(got.Links) != len(want.Links) {
		t.Fatalf("rolled forward to\n%+v\nthe log had\n%+v", got, want)
	}
	for i := range got.Tree {
		if string(got.Tree[i]) != string(want.Tree[i]) {
			t.Fatalf("tree hash %d differs", i)
		}
	}
	for i := range got.Links {
		if got.Links[i].Seq != want.Links[i].Seq || got.Links[i].Size != want.Links[i].Size || len(got.Links[i].Seg) != len(want.Links[i].Seg) {
			t.Fatalf("link %d: %+v, want %+v", i, got.Links[i], want.Links[i])
		}
	}
	if next.Pending() != 0 {
		t.Fatalf("%d records pending after a checkpoint", next.Pending())
	}

	// The recovery after it verifies: the sink's checkpoint is part of the
	// log that continues.
	rec, err := next.Recover(kept.Seq+50, "power cut")
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := next.Checkpoint(false)
	if err != nil {
		t.Fatal(err)
	}
	all := concat(pc.before, after, [][]byte{rec.Line, c.Line})
	if _, err := runAccepting(pc.key, join(all), SeqRange{want.Seq + 1, kept.Seq + 50}); err != nil {
		t.Fatalf("the log continued from the sink's checkpoint does not verify: %v", err)
	}

	// Without the roll forward the same start forks the log at that
	// checkpoint: the window this closes.
	old := stolen(t, l, kept)
	rec, err = old.Recover(kept.Seq+50, "power cut")
	if err != nil {
		t.Fatal(err)
	}
	c, _, err = old.Checkpoint(false)
	if err != nil {
		t.Fatal(err)
	}
	all = concat(pc.before, after, [][]byte{rec.Line, c.Line})
	_, err = runAccepting(pc.key, join(all), SeqRange{kept.Seq + 1, kept.Seq + 50})
	if err == nil {
		t.Fatal("a recovery that skips a checkpoint a sink holds verified")
	}
	t.Logf("without rolling forward: %v", err)
}

// What a hostile sink (or a damaged file) offers past the state is taken
// only up to a checkpoint this log's key signed over exactly those
// records.
func TestRollForwardRefusesWhatTheKeyDidNotSign(t *testing.T) {
	pc := powerCut(t)
	l, kept, after := pc.l, pc.kept, pc.after

	// Records that chain on from the state, with a checkpoint signed by
	// another key: what a sink could write with no key of the log's.
	other, err := New(kept.Origin, tiny)
	if err != nil {
		t.Fatal(err)
	}
	forger, err := Resume(kept, other.Key(), longEpochs)
	if err != nil {
		t.Fatal(err)
	}
	var forged [][]byte
	e, _ := audit.New(audit.SealVerified, audit.Actor{}, audit.Str("shard_id", "forged"), audit.Uint("gpu_device", 0))
	forged = append(forged, forger.Seal(&e).Line)
	c, _, err := forger.Checkpoint(false)
	if err != nil {
		t.Fatal(err)
	}
	forged = append(forged, c.Line)

	// A checkpoint the log's own key signed that ends the epoch: the next
	// key it certifies was in the lost state only.
	ender := stolen(t, l, kept)
	e, _ = audit.New(audit.SealVerified, audit.Actor{}, audit.Str("shard_id", "last of the epoch"), audit.Uint("gpu_device", 0))
	ending := [][]byte{ender.Seal(&e).Line}
	c, _, err = ender.Checkpoint(true)
	if err != nil {
		t.Fatal(err)
	}
	ending = append(ending, c.Line)

	cases := map[string][][]byte{
		"a checkpoint that ends the epoch":       ending,
		"a checkpoint signed by another key":     forged,
		"a record missing before the checkpoint": {after[0], after[2], after[3]},
		"records of an earlier run":              pc.before[1:],
		"no checkpoint":                          after[:2],
		"nothing":                                nil,
	}
	for name, lines := range cases {
		t.Run(name, func(t *testing.T) {
			next := stolen(t, l, kept)
			taken, _, err := next.RollForward(checked(t, lines))
			if err != nil {
				t.Fatal(err)
			}
			if taken != 0 || next.Seq() != kept.Seq || next.tree.End() != kept.TreeSize {
				t.Fatalf("took %d records", taken)
			}
		})
	}

	// A checkpoint whose record says another tree size than its note.
	var rec = checked(t, after)
	rec[2].Event.Fields = append([]audit.Field(nil), rec[2].Event.Fields...)
	for i := range rec[2].Event.Fields {
		if rec[2].Event.Fields[i].Key == "tree_size" {
			rec[2].Event.Fields[i] = audit.Uint("tree_size", 1)
		}
	}
	next := stolen(t, l, kept)
	if taken, _, _ := next.RollForward(rec); taken != 0 {
		t.Fatalf("took %d records under a checkpoint record that contradicts its note", taken)
	}
}

// FuzzRollForward: whatever a sink's file holds past the state, the roll
// forward does not panic and takes records only up to a checkpoint of
// this log's key over exactly them: the tree it ends with is the one that
// checkpoint signs.
func FuzzRollForward(f *testing.F) {
	pc := powerCut(f)
	f.Add(join(pc.after))
	f.Add(join(pc.after[:3]))
	f.Add(join(pc.before))
	f.Fuzz(func(t *testing.T, data []byte) {
		var records []chain.Record
		_ = chain.ReadRecords(chain.Source{Name: "fuzz", R: bytes.NewReader(data)}, func(r chain.Record) error {
			records = append(records, r)
			return nil
		})
		next := stolen(t, pc.l, pc.kept)
		taken, seq, err := next.RollForward(records)
		if err != nil || taken == 0 {
			return
		}
		got := next.State()
		c, err := Open(got.LastCheckpoint, pc.key)
		if err != nil || got.LastCheckpointSeq != seq || c.Size+1 != got.TreeSize {
			t.Fatalf("took %d records to seq %d: the log's last checkpoint does not sign its tree (%v)", taken, seq, err)
		}
	})
}
