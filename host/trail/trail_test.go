package trail

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audit/chain"
)

// testLog writes n events with a checkpoint every ckpt records and an epoch
// every epoch records, ending with a checkpoint.
func testLog(t testing.TB, n int, limits Limits) (*Log, note.Verifier, [][]byte) {
	t.Helper()
	l, err := New(Origin("w1"), limits)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(l.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	var lines [][]byte
	add := func(r audit.Record) { lines = append(lines, r.Line) }
	for i := 0; i < n; i++ {
		e, err := audit.New(audit.SealVerified, audit.Actor{WorkerID: "w1"}, audit.Str("shard_id", "s"), audit.Uint("gpu_device", uint64(i)))
		if err != nil {
			t.Fatal(err)
		}
		add(l.Seal(&e))
		if due, end := l.Due(); due {
			c, _, err := l.Checkpoint(end)
			if err != nil {
				t.Fatal(err)
			}
			add(c)
		}
	}
	if l.Pending() > 0 {
		c, _, err := l.Checkpoint(false)
		if err != nil {
			t.Fatal(err)
		}
		add(c)
	}
	return l, v, lines
}

func join(lines [][]byte) []byte {
	var b bytes.Buffer
	for _, l := range lines {
		b.Write(l)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func run(key note.Verifier, data []byte, ext ...External) (Report, error) {
	return Verify(Options{Key: key, Checkpoints: ext, Keep: true}, chain.Source{Name: "t.log", R: bytes.NewReader(data)})
}

func runAccepting(key note.Verifier, data []byte, loss ...SeqRange) (Report, error) {
	return Verify(Options{Key: key, Keep: true, AcceptLoss: loss}, chain.Source{Name: "t.log", R: bytes.NewReader(data)})
}

var small = Limits{EpochEvents: 7, EpochDuration: time.Hour, CheckpointEvents: 3, CheckpointInterval: time.Hour}

func TestLogVerifies(t *testing.T) {
	_, key, lines := testLog(t, 20, small)
	rep, err := run(key, join(lines))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Epoch < 2 || rep.Checkpoints < 6 || rep.Records != len(lines) || len(rep.Notes) != 0 {
		t.Fatalf("report %+v", rep)
	}
}

func expect(t *testing.T, err error, p chain.Problem, seq uint64) {
	t.Helper()
	var ve *chain.Error
	if !errors.As(err, &ve) {
		t.Fatalf("want a *chain.Error (%s at seq %d), got %v", p, seq, err)
	}
	if ve.Problem != p || ve.Seq != seq {
		t.Fatalf("got %s at seq %d (%v), want %s at seq %d", ve.Problem, ve.Seq, ve, p, seq)
	}
}

func TestTamperUnit(t *testing.T) {
	_, key, lines := testLog(t, 20, small)
	edit := func(i int, from, to string) [][]byte {
		out := append([][]byte(nil), lines...)
		out[i] = bytes.Replace(lines[i], []byte(from), []byte(to), 1)
		if bytes.Equal(out[i], lines[i]) {
			t.Fatalf("edit of line %d did nothing", i+1)
		}
		return out
	}
	// Rehash an edited record and relink everything after it: what anyone
	// can do without a key. The next checkpoint catches it.
	rehash := func(i int) [][]byte {
		out := append([][]byte(nil), lines...)
		var prev []byte
		for j := range out {
			e, _ := audit.ParseJSON(out[j])
			if j == i {
				e.Fields[0] = audit.Uint("gpu_device", 999)
			}
			if j >= i {
				e.Chain.Prev = prev
				e.Chain.Hash = chain.Hash(&e)
				out[j] = e.AppendJSON(nil)
			}
			prev = e.Chain.Hash
		}
		return out
	}
	_, err := run(key, join(rehash(1)))
	expect(t, err, chain.Edited, 4) // the checkpoint after seq 3
	_, err = run(key, join(edit(0, `"gpu_device":0`, `"gpu_device":1`)))
	expect(t, err, chain.Edited, 1)
	_, err = run(key, join(append(append([][]byte{}, lines[:5]...), lines[6:]...)))
	expect(t, err, chain.Missing, 7)
	_, err = run(key, join(lines[:len(lines)-2]))
	expect(t, err, Unsigned, 0+parse(t, lines[len(lines)-4]).Seq+1)
	_, err = run(key, join(lines[2:]))
	expect(t, err, chain.Missing, 3)
	_, err = run(key, nil)
	expect(t, err, chain.Missing, 0)
}

func parse(t *testing.T, line []byte) audit.Event {
	e, err := audit.ParseJSON(line)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestHugeEpochReturnsAtOnce(t *testing.T) {
	_, key, lines := testLog(t, 5, small)
	e := parse(t, lines[len(lines)-1])
	e.Seq++
	e.Chain.Epoch = 1 << 40
	e.Chain.Prev = e.Chain.Hash
	e.Chain.Hash = chain.Hash(&e)
	start := time.Now()
	_, err := run(key, join(append(lines, e.AppendJSON(nil))))
	expect(t, err, chain.Forged, e.Seq)
	if time.Since(start) > time.Second {
		t.Fatal("slow")
	}
}

func TestRecoverAfterCrash(t *testing.T) {
	l, key, lines := testLog(t, 10, small)
	st := l.State()
	secret := l.Key().AppendSecret(nil)
	k2, err := LoadKey(st.Origin, secret)
	if err != nil {
		t.Fatal(err)
	}
	// The crashed run wrote 2 more records the state does not hold.
	for i := 0; i < 2; i++ {
		e, _ := audit.New(audit.SealVerified, audit.Actor{}, audit.Str("shard_id", "x"), audit.Uint("gpu_device", 1))
		l.Seal(&e)
		lines = append(lines, e.AppendJSON(nil))
	}
	l2, err := Resume(st, k2, small)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := l2.Recover(st.Seq+100, "unclean stop")
	if err != nil {
		t.Fatal(err)
	}
	out := append(append([][]byte{}, lines...), rec.AppendJSON(nil))
	c, _, err := l2.Checkpoint(false)
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, c.AppendJSON(nil))
	// A declared loss fails unless the operator accepts that exact range.
	recSeq := parse(t, rec.Line).Seq
	_, err = run(key, join(out))
	expect(t, err, Lost, recSeq)
	want := SeqRange{st.Seq + 1, st.Seq + 100}
	if !strings.Contains(err.Error(), "-accept-loss "+want.String()) {
		t.Fatalf("the failure does not name the range to accept: %v", err)
	}
	if _, err := runAccepting(key, join(out), SeqRange{want.From - 1, want.To}); err == nil {
		t.Fatal("another range accepted the loss")
	}
	rep, err := runAccepting(key, join(out), want)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Notes) == 0 || !strings.Contains(rep.Notes[0], "not part of the log") {
		t.Fatalf("notes %q", rep.Notes)
	}
	// The same with the crashed run's last records lost: nothing after the
	// last checkpoint is vouched for, and the checkpoint itself is lost too.
	out = append(append([][]byte{}, lines[:len(lines)-2]...), rec.AppendJSON(nil), c.AppendJSON(nil))
	if _, err := runAccepting(key, join(out), want); err != nil {
		t.Fatal(err)
	}
	// Proof of an early record against the last checkpoint.
	rep, err = runAccepting(key, join(append(append([][]byte{}, lines...), rec.AppendJSON(nil), c.AppendJSON(nil))), want)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Prove(&rep, 2, lines[1])
	if err != nil {
		t.Fatal(err)
	}
	data, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	q, err := ParseProof(data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Check(PublicKeys{First: key}, nil, 0); err != nil {
		t.Fatal(err)
	}
}

// FuzzVerify: no trail, however hostile, panics the verifier, makes it work
// without bound, or yields anything but a *chain.Error for in-memory input.
func FuzzVerify(f *testing.F) {
	l, key, lines := testLog(f, 12, small)
	f.Add(join(lines))
	f.Add(join(lines[:5]))
	// A trail with a recovery, its links carried.
	st := l.State()
	k, _ := LoadKey(st.Origin, l.Key().AppendSecret(nil))
	if r, err := Resume(st, k, small); err == nil {
		if rec, err := r.Recover(st.Seq+3, "crash"); err == nil {
			if c, _, err := r.Checkpoint(false); err == nil {
				f.Add(join(append(append([][]byte{}, lines...), rec.Line, c.Line)))
			}
		}
	}
	f.Add([]byte("{}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := Verify(Options{Key: key, Keep: true, Checkpoints: []External{{Name: "x", Note: data}}}, chain.Source{Name: "fuzz", R: bytes.NewReader(data)})
		var ve *chain.Error
		if err != nil && !errors.As(err, &ve) {
			t.Fatalf("non-typed error: %v", err)
		}
		if err == nil && rep.Records == 0 {
			t.Fatal("an empty trail verified")
		}
	})
}

// FuzzParseCheckpoint: a checkpoint that parses writes back to the same
// text, and nothing panics.
func FuzzParseCheckpoint(f *testing.F) {
	l, _, _ := testLog(f, 12, small)
	_, c, err := l.Checkpoint(true)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(c.Note)
	f.Add([]byte("o\n1\nAAAA\nepoch 0\n\n— o x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCheckpoint(data)
		if err != nil {
			return
		}
		if text, _, _ := bytes.Cut(data, []byte("\n\n")); c.body() != string(text)+"\n" {
			t.Fatalf("parsed %q from %q", c.body(), text)
		}
	})
}

// FuzzParseProof: a proof file, however hostile, is refused or checked,
// never a panic.
func FuzzParseProof(f *testing.F) {
	_, key, lines := testLog(f, 12, small)
	rep, err := Verify(Options{Key: key, Keep: true}, chain.Source{Name: "t", R: bytes.NewReader(join(lines))})
	if err != nil {
		f.Fatal(err)
	}
	p, err := Prove(&rep, 2, lines[1])
	if err != nil {
		f.Fatal(err)
	}
	data, err := p.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Fuzz(func(t *testing.T, data []byte) {
		if p, err := ParseProof(data); err == nil {
			_, _ = p.Check(PublicKeys{First: key}, nil, 0)
		}
	})
}

// TestForkAgainstAStoredCheckpoint: two continuations of one log from the
// same state (what root holding the current key can make): each verifies on
// its own, and each fails against a checkpoint the other signed.
func TestForkAgainstAStoredCheckpoint(t *testing.T) {
	l, key, lines := testLog(t, 5, Limits{EpochEvents: 100, EpochDuration: time.Hour, CheckpointEvents: 100, CheckpointInterval: time.Hour})
	st := l.State()
	branch := func(device uint64) ([][]byte, []byte) {
		k, err := LoadKey(st.Origin, l.Key().AppendSecret(nil))
		if err != nil {
			t.Fatal(err)
		}
		b, err := Resume(st, k, small)
		if err != nil {
			t.Fatal(err)
		}
		e, _ := audit.New(audit.SealVerified, audit.Actor{}, audit.Str("shard_id", "fork"), audit.Uint("gpu_device", device))
		b.Seal(&e)
		c, ck, err := b.Checkpoint(false)
		if err != nil {
			t.Fatal(err)
		}
		return append(append([][]byte{}, lines...), e.AppendJSON(nil), c.AppendJSON(nil)), ck.Note
	}
	a, noteA := branch(1)
	b, noteB := branch(2)
	if _, err := run(key, join(a), External{Name: "a.checkpoint", Note: noteA}); err != nil {
		t.Fatalf("branch a against its own checkpoint: %v", err)
	}
	_, err := run(key, join(a), External{Name: "b.checkpoint", Note: noteB})
	var ve *chain.Error
	if !errors.As(err, &ve) || ve.Problem != chain.Mismatch || !strings.Contains(ve.Detail, "forked") {
		t.Fatalf("a fork passed against the other branch's checkpoint: %v", err)
	}
	if _, err := run(key, join(b), External{Name: "a.checkpoint", Note: noteA}); err == nil {
		t.Fatal("the other branch passed too")
	}
}

// TestShortenedRecordStillChains: a syslog receiver's copy in which the
// sink had to shorten a record (over max_message_bytes) still verifies: the
// record keeps its place in the tree by its hash, with a note.
func TestShortenedRecordStillChains(t *testing.T) {
	_, key, lines := testLog(t, 8, small)
	var syslog [][]byte
	for i, l := range lines {
		e, err := audit.ParseJSON(l)
		if err != nil {
			t.Fatal(err)
		}
		sd := fmt.Sprintf(`seq="%d"`, e.Seq)
		msg := l
		if i == 2 && e.Type != audit.AuditCheckpoint {
			short := e
			short.Fields = nil
			msg = short.AppendJSON(nil)
			sd += ` shortened="9000"`
		}
		syslog = append(syslog, append([]byte("<38>1 2026-11-29T00:00:00.000000Z node vramward 1 "+string(e.Type)+" [vramward@32473 "+sd+"] \xef\xbb\xbf"), msg...))
	}
	rep, err := run(key, join(syslog))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "shortened") {
		t.Fatalf("notes %q", rep.Notes)
	}
}

// TestResendsInACopy: a receiver's copy holding seqs 6 to 9 twice, byte
// for byte (RELP re-sends what was unacknowledged after a stall), verifies
// as a copy with a note naming the run, and counts each record once; the
// same re-send fails a trail read without Resends, and a second record of
// a seq that differs fails even with it.
func TestResendsInACopy(t *testing.T) {
	_, key, lines := testLog(t, 20, small)
	var twice [][]byte
	twice = append(twice, lines[:9]...)
	twice = append(twice, lines[5:]...)
	rep, err := Verify(Options{Key: key, Keep: true, Resends: true}, chain.Source{Name: "copy.log", R: bytes.NewReader(join(twice))})
	if err != nil {
		t.Fatalf("a copy with byte-identical re-sends: %v", err)
	}
	if rep.Records != len(lines) || rep.Resent != 4 || len(rep.Seen) != len(lines) {
		t.Fatalf("records %d, resent %d, seen %d; want %d, 4, %d", rep.Records, rep.Resent, len(rep.Seen), len(lines), len(lines))
	}
	if len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "seqs 6 to 9 from copy.log:10") {
		t.Fatalf("notes %q", rep.Notes)
	}
	if _, err := run(key, join(twice)); err == nil {
		t.Fatal("re-sends accepted in a trail verified without Resends")
	}
	// Seq 7 again, but another record: an insertion, not a re-send.
	_, _, other := testLog(t, 20, small)
	forged := append(append([][]byte(nil), lines[:9]...), other[6])
	forged = append(forged, lines[9:]...)
	_, err = Verify(Options{Key: key, Resends: true}, chain.Source{Name: "copy.log", R: bytes.NewReader(join(forged))})
	expect(t, err, chain.Duplicate, 7)
}

// TestEpochEndsByMonotonicTimeAfterTheClockWentBack: the state was saved
// 59 minutes into a one-hour epoch by a clock a day ahead of the one the
// host restarts with. The epoch still ends after one more minute of
// running, and the jump back is reported. Before, the epoch's age was the
// wall clock's now minus its start, negative for a day.
func TestEpochEndsByMonotonicTimeAfterTheClockWentBack(t *testing.T) {
	limits := Limits{EpochDuration: time.Hour, EpochEvents: 1 << 30, CheckpointEvents: 1 << 30, CheckpointInterval: 24 * time.Hour}
	l, _, _ := testLog(t, 3, limits)
	now := time.Now().Round(0)
	st := l.State()
	st.SavedAt, st.EpochStarted, st.EpochElapsed = now.Add(24*time.Hour), now.Add(24*time.Hour-59*time.Minute), 59*time.Minute
	r, err := Resume(st, l.Key(), limits)
	if err != nil {
		t.Fatal(err)
	}
	if j := r.ResumeJump(); j > -23*time.Hour {
		t.Fatalf("ResumeJump %s with the clock a day behind the saved state", j)
	}
	mono := now
	r.SetClock(func() time.Time { return mono })
	if _, end := r.Due(); end {
		t.Fatal("the epoch ended at once")
	}
	mono = mono.Add(2 * time.Minute)
	if _, end := r.Due(); !end {
		t.Fatal("the epoch did not end an hour into it: a clock set back kept its key alive")
	}
}

// TestClockJumpWhileRunning: the wall clock moving against the monotonic
// one by more than a little is reported once; drift under it is not.
func TestClockJumpWhileRunning(t *testing.T) {
	l, _, _ := testLog(t, 1, small)
	mono, wall := time.Unix(1000, 0), time.Unix(5000, 0)
	l.SetClock(func() time.Time { return mono })
	l.SetWallClock(func() time.Time { return wall })
	mono, wall = mono.Add(time.Minute), wall.Add(time.Minute+time.Second)
	if _, ok := l.ClockJump(); ok {
		t.Fatal("a second of drift in a minute called a jump")
	}
	wall = wall.Add(-time.Hour)
	j, ok := l.ClockJump()
	if !ok || j > -59*time.Minute || j < -61*time.Minute {
		t.Fatalf("a clock set back an hour: %s %v", j, ok)
	}
	if _, ok := l.ClockJump(); ok {
		t.Fatal("the same jump reported twice")
	}
}

// TestLastCheckpointSurvivesResume: after a restart the log reports the
// tree size its last checkpoint signed, not 0 (status showed "last
// checkpoint at seq 65 (tree size 0)").
func TestLastCheckpointSurvivesResume(t *testing.T) {
	l, _, _ := testLog(t, 10, small)
	seq, size, _ := l.LastCheckpoint()
	r, err := Resume(l.State(), l.Key(), small)
	if err != nil {
		t.Fatal(err)
	}
	if rs, rsize, _ := r.LastCheckpoint(); rs != seq || rsize != size || size == 0 {
		t.Fatalf("before the restart: seq %d size %d; after: seq %d size %d", seq, size, rs, rsize)
	}
}
