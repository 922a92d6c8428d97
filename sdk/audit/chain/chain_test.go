package chain

import (
	"bytes"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vramward/vramward/sdk/audit"
)

var testKey = Key{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32}

// trail seals n events with small epochs and returns their lines.
func trail(t testing.TB, n int) [][]byte {
	t.Helper()
	s := NewSealer(testKey, Limits{Events: 4, Duration: time.Hour})
	var lines [][]byte
	for i := 0; i < n; i++ {
		e, err := audit.New(audit.SealVerified, audit.Actor{WorkerID: "w"}, audit.Str("shard_id", "s"), audit.Uint("gpu_device", uint64(i)))
		if err != nil {
			t.Fatal(err)
		}
		s.Seal(&e)
		lines = append(lines, e.AppendJSON(nil))
	}
	return lines
}

func join(lines [][]byte) []byte {
	var b bytes.Buffer
	for _, l := range lines {
		b.Write(l)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func verify(k *Key, data ...[]byte) (Report, error) {
	var srcs []Source
	for i, d := range data {
		srcs = append(srcs, Source{Name: []string{"a.log", "b.log", "c.log"}[i], R: bytes.NewReader(d)})
	}
	return Verify(k, srcs...)
}

func TestVerifyGoodTrail(t *testing.T) {
	lines := trail(t, 10)
	rep, err := verify(&testKey, join(lines))
	if err != nil {
		t.Fatal(err)
	}
	last, _ := audit.ParseJSON(lines[9])
	want := Report{Records: 10, FirstSeq: 1, LastSeq: 10, FirstEpoch: 0, LastEpoch: 2, LastType: audit.SealVerified, LastMAC: last.Chain.MAC, MACsChecked: true}
	if !reflect.DeepEqual(rep, want) {
		t.Fatalf("report %+v, want %+v", rep, want)
	}
	// Rotated into three files, oldest first: still one chain.
	if _, err := verify(&testKey, join(lines[:3]), join(lines[3:7]), join(lines[7:])); err != nil {
		t.Fatalf("rotated trail: %v", err)
	}
	// Older files rotated away: the rest verifies and says it is partial.
	rep, err = verify(&testKey, join(lines[5:]))
	if err != nil || !rep.PartialStart || rep.FirstSeq != 6 {
		t.Fatalf("partial trail: %+v, %v", rep, err)
	}
	// No key: structure only.
	rep, err = verify(nil, join(lines))
	if err != nil || rep.MACsChecked {
		t.Fatalf("structural check: %+v, %v", rep, err)
	}
}

func TestVerifyFindsFirstBadRecord(t *testing.T) {
	lines := trail(t, 8)
	edit := func(i int, from, to string) [][]byte {
		out := append([][]byte(nil), lines...)
		out[i] = bytes.Replace(lines[i], []byte(from), []byte(to), 1)
		return out
	}
	otherKey := testKey
	otherKey[0] ^= 1
	cut := join(lines)
	for _, tc := range []struct {
		name    string
		data    []byte
		key     *Key
		problem Problem
		line    int
		seq     uint64
	}{
		{"edited field", join(edit(4, `"gpu_device":4`, `"gpu_device":5`)), &testKey, Edited, 5, 5},
		{"edited first record", join(edit(0, `"gpu_device":0`, `"gpu_device":9`)), &testKey, Edited, 1, 1},
		{"edited mac breaks the next link", join(edit(2, `"mac":"`, `"mac":"00`[:7]+"0")), &testKey, Malformed, 3, 0},
		{"missing record", join(append(append([][]byte{}, lines[:3]...), lines[4:]...)), &testKey, Missing, 4, 5},
		{"missing tail of a file is invisible but a gap is not", join(append(append([][]byte{}, lines[:6]...), lines[7])), &testKey, Missing, 7, 8},
		{"reordered", join([][]byte{lines[0], lines[1], lines[3], lines[2], lines[4]}), &testKey, Reordered, 3, 4},
		{"moved back", join([][]byte{lines[0], lines[1], lines[2], lines[1]}), &testKey, Reordered, 4, 2},
		{"duplicate", join([][]byte{lines[0], lines[1], lines[1], lines[2]}), &testKey, Duplicate, 3, 2},
		{"truncated last line", cut[:len(cut)-20], &testKey, Truncated, 8, 0},
		{"last line lost its newline", cut[:len(cut)-1], &testKey, Truncated, 8, 8},
		{"wrong key", join(lines), &otherKey, WrongKey, 1, 1},
		{"wrong key, single record", join(lines[:1]), &otherKey, WrongKey, 1, 1},
		{"not canonical", join(edit(3, `"seq":4,`, `"seq": 4,`)), &testKey, Edited, 4, 4},
		{"garbage line", join(append(append([][]byte{}, lines[:2]...), []byte("hello"))), &testKey, Malformed, 3, 0},
		{"empty line", join(append(append([][]byte{}, lines[:2]...), []byte(""))), &testKey, Malformed, 3, 0},
		{"prev relinked", join(edit(5, `"prev":"`, `"prev":"`+strings.Repeat("0", 64)+`","x":"`)), &testKey, Malformed, 6, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := verify(tc.key, tc.data)
			var ve *Error
			if !errors.As(err, &ve) {
				t.Fatalf("want *Error, got %v", err)
			}
			if ve.Problem != tc.problem || ve.Line != tc.line || ve.Seq != tc.seq {
				t.Fatalf("got %s at line %d seq %d (%v); want %s at line %d seq %d", ve.Problem, ve.Line, ve.Seq, ve, tc.problem, tc.line, tc.seq)
			}
			if !strings.HasPrefix(ve.Error(), "a.log:") {
				t.Errorf("message does not name the source: %v", ve)
			}
		})
	}
}

func TestVerifyRelinkedRecordIsEdited(t *testing.T) {
	lines := trail(t, 5)
	// Re-seal record 3 with a different prev: its own MAC is recomputed with
	// the right key (an insider with the key), but the link to record 2 breaks.
	e, err := audit.ParseJSON(lines[2])
	if err != nil {
		t.Fatal(err)
	}
	e.Chain.Prev = bytes.Repeat([]byte{7}, 32)
	k := KeyAt(testKey, e.Chain.Epoch)
	e.Chain.MAC = MAC(k, e.Chain.Prev, e.AppendCanonical(nil))
	lines[2] = e.AppendJSON(nil)
	_, err = verify(&testKey, join(lines))
	var ve *Error
	if !errors.As(err, &ve) || ve.Problem != Edited || ve.Seq != 3 || !strings.Contains(ve.Detail, "chain.prev") {
		t.Fatalf("got %v", err)
	}
}

// TestEpochKeysEvolveForward: a holder of K_e can forge records of epoch e
// and later, never of an earlier epoch.
func TestEpochKeysEvolveForward(t *testing.T) {
	lines := trail(t, 12) // epochs 0,0,0,0,1,1,1,1,2,2,2,2
	e, _ := audit.ParseJSON(lines[1])
	if e.Chain.Epoch != 0 {
		t.Fatalf("epoch %d", e.Chain.Epoch)
	}
	k1 := KeyAt(testKey, 1)
	e.Fields[0] = audit.Uint("gpu_device", 99)
	e.Chain.MAC = MAC(k1, e.Chain.Prev, e.AppendCanonical(nil)) // best an attacker holding K_1 can do
	lines[1] = e.AppendJSON(nil)
	_, err := verify(&testKey, join(lines))
	var ve *Error
	if !errors.As(err, &ve) || ve.Seq != 2 || ve.Problem != Edited {
		t.Fatalf("forgery with a later key not caught: %v", err)
	}
	if KeyAt(testKey, 2) != Evolve(Evolve(testKey)) {
		t.Fatal("KeyAt disagrees with Evolve")
	}
}

func TestEpochEndsOnTime(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := NewSealer(testKey, Limits{Events: 1000, Duration: 15 * time.Minute})
	s.SetClock(func() time.Time { return now })
	s.st.EpochStarted = now
	seal := func() audit.Event {
		e, _ := audit.New(audit.HostStopped, audit.Actor{}, audit.Str("reason", "r"), audit.Uint("undelivered", 0))
		s.Seal(&e)
		return e
	}
	if e := seal(); e.Chain.Epoch != 0 {
		t.Fatalf("epoch %d", e.Chain.Epoch)
	}
	now = now.Add(16 * time.Minute)
	s.Tick() // idle host: the timer ends the epoch without a record
	now = now.Add(16 * time.Minute)
	if e := seal(); e.Chain.Epoch != 2 {
		t.Fatalf("epoch %d after two intervals, want 2", e.Chain.Epoch)
	}
	if s.State().Key != KeyAt(testKey, 2) {
		t.Fatal("state key is not K_2")
	}
}

func TestParseKey(t *testing.T) {
	k, err := ParseKey("  " + testKey.String() + "\n")
	if err != nil || k != testKey {
		t.Fatalf("round trip: %v", err)
	}
	for _, bad := range []string{"", "zz", testKey.String()[:62]} {
		if _, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
}

// FuzzVerify: no trail, however hostile, panics the verifier or makes it
// derive keys without bound.
func FuzzVerify(f *testing.F) {
	f.Add(join(trail(f, 6)))
	f.Add([]byte("{}\n"))
	f.Add([]byte(`{"seq":1,"id":"","time":"2026-01-01T00:00:00.000000000Z","type":"X","severity":"INFO","service_id":"","actor":{"worker_id":"","source_ip":"","correlation_id":""},"fields":{},"chain":{"epoch":1048576,"prev":"","mac":""}}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := Verify(&testKey, Source{Name: "fuzz", R: bytes.NewReader(data)})
		if err == nil && rep.Records > 0 && rep.LastSeq < rep.FirstSeq {
			t.Fatalf("report out of order: %+v", rep)
		}
		var ve *Error
		if err != nil && !errors.As(err, &ve) {
			t.Fatalf("non-typed error from an in-memory source: %v", err)
		}
	})
}

// TestNewSegmentAfterUncleanStop: after a crash the host resumes past its
// seq reservation with a HostStarted that has no prev, in a later epoch; the
// verifier accepts it and reports the segment.
func TestNewSegmentAfterUncleanStop(t *testing.T) {
	lines := trail(t, 6) // epochs 0,0,0,0,1,1
	st := State{Key: KeyAt(testKey, 2), Epoch: 2, Seq: 4096, EpochStarted: time.Now()}
	s := Resume(st, Limits{Events: 4, Duration: time.Hour})
	e, _ := audit.New(audit.HostStarted, audit.Actor{}, audit.Str("version", "v"), audit.Str("config_sha256", "c"))
	s.Seal(&e)
	lines = append(lines, e.AppendJSON(nil))
	rep, err := verify(&testKey, join(lines))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Segments) != 1 || rep.Segments[0].AfterSeq != 6 || rep.Segments[0].StartSeq != 4097 || rep.Segments[0].Line != 7 {
		t.Fatalf("segments %+v", rep.Segments)
	}
	// Any other record without a prev is an edit, and a HostStarted in the
	// same epoch cannot start a segment.
	bad := append([][]byte(nil), lines[:6]...)
	e2, _ := audit.New(audit.HostStarted, audit.Actor{}, audit.Str("version", "v"), audit.Str("config_sha256", "c"))
	s2 := Resume(State{Key: KeyAt(testKey, 1), Epoch: 1, Seq: 4096, EpochStarted: time.Now()}, Limits{Events: 100, Duration: time.Hour})
	s2.Seal(&e2)
	bad = append(bad, e2.AppendJSON(nil))
	if _, err := verify(&testKey, join(bad)); err == nil {
		t.Fatal("a segment start in the same epoch was accepted")
	}
}

// A syslog receiver's copy (RFC 5424 lines whose MSG is the record, as the
// audit-syslog sink sends them) verifies like the file; a record the sink
// had to shorten is named as such.
func TestVerifySyslogCopy(t *testing.T) {
	lines := trail(t, 6)
	syslog := make([][]byte, len(lines))
	for i, l := range lines {
		syslog[i] = append([]byte(`<38>1 2026-11-23T01:02:03.000000Z gpu-1 vramward 42 SealVerified [vramward@32473 seq="`+
			strconv.Itoa(i+1)+`" mac="x\]y"] `+"\xef\xbb\xbf"), l...)
	}
	rep, err := verify(&testKey, join(syslog))
	if err != nil || rep.Records != 6 || !rep.MACsChecked {
		t.Fatalf("syslog copy: %+v %v", rep, err)
	}
	short := append([][]byte(nil), syslog...)
	short[3] = []byte(strings.Replace(string(short[3]), `seq="4"`, `seq="4" shortened="9000"`, 1))
	_, err = verify(&testKey, join(short))
	var ve *Error
	if !errors.As(err, &ve) || ve.Seq != 4 || !strings.Contains(ve.Detail, "shortened") {
		t.Fatalf("shortened record: %v", err)
	}
	_, err = verify(&testKey, []byte("<14>1 - - other - - - not ours\n"))
	if !errors.As(err, &ve) || ve.Problem != Malformed {
		t.Fatalf("a foreign syslog line: %v", err)
	}
}
