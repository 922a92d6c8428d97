package trail

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audit/chain"
)

// The attacker of these tests is root on the node: it holds the trail, the
// state (the current epoch's key among it) and every genuine checkpoint
// note, which the trail itself carries. What it must not manage is a
// rewrite of what an earlier epoch's checkpoints cover that verifies, or
// a deletion that verifies without the operator accepting it as a loss.

var tiny = Limits{EpochEvents: 10, EpochDuration: time.Hour, CheckpointEvents: 4, CheckpointInterval: time.Hour}

// stolen resumes the log from its final state and key, as whoever took the
// node would.
func stolen(t testing.TB, l *Log, st State) *Log {
	t.Helper()
	k, err := LoadKey(st.Origin, l.Key().AppendSecret(nil))
	if err != nil {
		t.Fatal(err)
	}
	f, err := Resume(st, k, tiny)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// forge appends a recovery and a checkpoint the stolen log signs.
func forge(t *testing.T, f *Log, kept [][]byte, reserved uint64) ([][]byte, uint64) {
	t.Helper()
	rec, err := f.Recover(reserved, "forged")
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := f.Checkpoint(false)
	if err != nil {
		t.Fatal(err)
	}
	return append(append(append([][]byte{}, kept...), rec.Line), c.Line), parse(t, rec.Line).Seq
}

// checkpointIndex is the index of the n-th AuditCheckpoint line.
func checkpointIndex(t *testing.T, lines [][]byte, n int) int {
	t.Helper()
	for i, l := range lines {
		if parse(t, l).Type == audit.AuditCheckpoint {
			if n == 0 {
				return i
			}
			n--
		}
	}
	t.Fatal("not that many checkpoints")
	return 0
}

// lineOf is the index of the line with seq.
func lineOf(t *testing.T, lines [][]byte, seq uint64) int {
	t.Helper()
	for i, l := range lines {
		if parse(t, l).Seq == seq {
			return i
		}
	}
	t.Fatalf("no seq %d", seq)
	return 0
}

// segOf is the compact range of the leaves from..to of a log without
// recoveries (leaf i is line i), as anyone holding the trail computes it.
func segOf(t *testing.T, lines [][]byte, from, to uint64) [][]byte {
	t.Helper()
	r := rf.NewEmptyRange(from)
	for i := from; i < to; i++ {
		if err := r.Append(parse(t, lines[i]).Chain.Hash, nil); err != nil {
			t.Fatal(err)
		}
	}
	return cloneHashes(r)
}

func TestForgedRecoveryIsRefused(t *testing.T) {
	l, key, lines := testLog(t, 60, tiny)
	st := l.State()
	if st.Epoch < 5 {
		t.Fatalf("epoch %d: want several", st.Epoch)
	}
	last := parse(t, lines[len(lines)-1]).Seq

	t.Run("cut after an early checkpoint, recovery from the real links", func(t *testing.T) {
		// The state's links start later than the trail's last checkpoint.
		kept := lines[:checkpointIndex(t, lines, 1)+1]
		out, at := forge(t, stolen(t, l, st), kept, last+5)
		_, err := run(key, join(out))
		expect(t, err, chain.Forged, at)
		if !strings.Contains(err.Error(), "does not continue from the last checkpoint") {
			t.Fatal(err)
		}
		_, err = Verify(Options{Key: key, Live: true}, chain.Source{Name: "t.log", R: bytes.NewReader(join(out))})
		expect(t, err, chain.Forged, at)
	})

	t.Run("five lines: a recovery carrying a tree of the whole log", func(t *testing.T) {
		out, at := forge(t, stolen(t, l, st), nil, last+5)
		_, err := run(key, join(out))
		// The trail starts at the recovery: the records before it are missing,
		// and the recovery cannot be bound to the empty tree.
		var ve *chain.Error
		if err == nil || !asChainError(err, &ve) || (ve.Problem != chain.Forged && ve.Problem != chain.Missing) {
			t.Fatalf("got %v", err)
		}
		_ = at
		// With the latest checkpoint kept off the node, and with -live.
		ext := External{Name: "off-node", Note: st.LastCheckpoint}
		if _, err := run(key, join(out), ext); err == nil {
			t.Fatal("verified against an off-node checkpoint")
		}
		if _, err := Verify(Options{Key: key, Live: true, Checkpoints: []External{ext}}, chain.Source{Name: "t.log", R: bytes.NewReader(join(out))}); err == nil {
			t.Fatal("verified with -live")
		}
	})

	t.Run("genuine notes replayed over an edited tree", func(t *testing.T) {
		ci := lineOf(t, lines, st.Links[2].Seq)
		kept := lines[:ci+1]
		fake := st
		fake.Links = append([]Link(nil), st.Links...)
		// The segment after the first carried checkpoint is another history.
		for i := range fake.Links {
			if i < len(fake.Links)-1 {
				fake.Links[i].Seg = cloneSeg(fake.Links[i].Seg)
				fake.Links[i].Seg[0][0] ^= 1
			}
		}
		out, at := forge(t, stolen(t, l, fake), kept, last+5)
		_, err := run(key, join(out))
		expect(t, err, chain.Forged, at)
		if !strings.Contains(err.Error(), "rewritten history") {
			t.Fatal(err)
		}
	})

	t.Run("a declared range that starts before the last checkpoint", func(t *testing.T) {
		fake := st
		fake.LastCheckpointSeq = 2 // from_seq 3: under the trail's checkpoints
		out, at := forge(t, stolen(t, l, fake), lines, last+5)
		_, err := run(key, join(out))
		expect(t, err, chain.Forged, at)
	})

	t.Run("records deleted behind a genuine-looking recovery", func(t *testing.T) {
		// The attacker can recompute every link from the trail: the walk
		// then holds, and what it removed is a loss, which fails.
		ci := lineOf(t, lines, st.Links[2].Seq)
		kept := lines[:ci+2] // the checkpoint and one record after it
		out, at := forge(t, stolen(t, l, st), kept, last+5)
		_, err := run(key, join(out))
		expect(t, err, Lost, at)
		want := SeqRange{parse(t, lines[ci]).Seq + 1, last + 5}
		if !strings.Contains(err.Error(), want.String()) {
			t.Fatalf("loss range not %s: %v", want, err)
		}
		// Accepting it says the records in the range are not vouched for.
		rep, err := runAccepting(key, join(out), want)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(rep.Notes, "\n"), "part of the loss") {
			t.Fatalf("notes %q", rep.Notes)
		}
	})

	t.Run("certs replayed over a recovery with no later checkpoint", func(t *testing.T) {
		// Links that stop at the trail's checkpoint carry no key beyond it:
		// the stolen current key signs nothing the verifier takes.
		ci := lineOf(t, lines, st.Links[2].Seq)
		fake := st
		fake.Links = []Link{st.Links[2]}
		fake.Links[0].Seg = segOf(t, lines, st.Links[2].Size, st.TreeSize)
		kept := lines[:ci+1]
		out, at := forge(t, stolen(t, l, fake), kept, last+5)
		_, err := run(key, join(out))
		var ve *chain.Error
		if !asChainError(err, &ve) || ve.Problem != chain.Forged && ve.Problem != chain.Malformed || ve.Seq < at {
			t.Fatalf("got %v", err)
		}
	})
}

func cloneSeg(s [][]byte) [][]byte {
	out := make([][]byte, len(s))
	for i, h := range s {
		out[i] = append([]byte(nil), h...)
	}
	return out
}

func asChainError(err error, ve **chain.Error) bool {
	e, ok := err.(*chain.Error)
	if ok {
		*ve = e
	}
	return ok
}

// TestRecoveryCarriesLinksThroughEpochs: a real crash in a later epoch than
// the trail's last checkpoint verifies once its loss is accepted: the
// recovery's checkpoints certify the keys in between.
func TestRecoveryCarriesLinksThroughEpochs(t *testing.T) {
	l, key, lines := testLog(t, 20, tiny)
	// The sink lost the last checkpoints with the host's queue.
	st := l.State()
	ci := lineOf(t, lines, st.Links[1].Seq)
	kept := lines[:ci+2]
	out, at := forge(t, stolen(t, l, st), kept, st.Seq+3)
	_, err := run(key, join(out))
	expect(t, err, Lost, at)
	rep, err := runAccepting(key, join(out), SeqRange{parse(t, lines[ci]).Seq + 1, st.Seq + 3})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Epoch != st.Epoch {
		t.Fatalf("epoch %d after the recovery, want %d", rep.Epoch, st.Epoch)
	}
}
