package audit

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/vramward/vramward/host/trail"
)

// TestAppendStateIsJSONMarshal: the hand-written encoding of a state is
// json.Marshal's, byte for byte, for states from empty to every field set,
// strings that need escaping included, so a start decodes what any version
// wrote.
func TestAppendStateIsJSONMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	hashes := func(n int) [][]byte {
		if n < 0 {
			return nil
		}
		hs := make([][]byte, n)
		for i := range hs {
			hs[i] = make([]byte, 32)
			for j := range hs[i] {
				hs[i][j] = byte(rng.IntN(256))
			}
		}
		return hs
	}
	full := stateBody{Version: stateVersion, Gen: 7, Origin: "node-1.example/vramward", Epoch: 3, Key: "node-1+3a4b5c6d+AbCd==", Seq: 1 << 40,
		Reserved: 1<<40 + 4096, Prev: hashes(1)[0], TreeSize: 99, Tree: hashes(7), EpochEvents: 12,
		EpochStarted: time.Date(2026, 12, 4, 18, 1, 2, 345678901, time.UTC), EpochElapsed: 1500 * time.Millisecond,
		SavedAt: time.Date(2026, 12, 4, 18, 1, 2, 0, time.FixedZone("x", 3600)), LastCheckpointSeq: 98, LastCheckpoint: []byte("origin\n99\nroot\n\n— sig\n"),
		Links:     []trail.Link{{Seq: 0, Size: 0, Note: nil, Seg: nil}, {Seq: 40, Size: 39, Note: []byte("n"), Seg: hashes(3)}, {Seg: hashes(0)}},
		Witnesses: []trail.WitnessState{{Name: "w1", Size: 9, Base: hashes(2), Tail: hashes(-1), Pending: []trail.WitnessState{{Name: "p", Base: hashes(0)}}}, {Name: "w2"}},
		FirstKey:  "node-1+00000000+Zm9v", Clean: true}
	cases := map[string]stateBody{
		"empty": {},
		"full":  full,
		"escaped strings": func() stateBody {
			b := full
			b.Origin, b.Key, b.FirstKey = "a\"b\\c<d>&e\x01\u2028é", "\xff\xfe", "tab\there"
			b.Witnesses = []trail.WitnessState{{Name: "<w>"}}
			return b
		}(),
		"empty not nil": func() stateBody {
			b := full
			b.Prev, b.Tree, b.LastCheckpoint, b.Links, b.Witnesses = []byte{}, [][]byte{}, []byte{}, []trail.Link{}, []trail.WitnessState{}
			return b
		}(),
	}
	for name, b := range cases {
		want, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendState([]byte("prefix"), &b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got[len("prefix"):], want) {
			t.Errorf("%s:\n got %s\nwant %s", name, got[len("prefix"):], want)
		}
	}
	// A time json.Marshal refuses is refused here too.
	bad := full
	bad.EpochStarted = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := json.Marshal(bad); err == nil {
		t.Fatal("json.Marshal took a year past 9999")
	}
	if _, err := appendState(nil, &bad); err == nil {
		t.Error("appendState took a year past 9999")
	}
}

// BenchmarkStateEncode: a state's encoding, as a checkpoint writes it
// under the log's lock, against encoding/json's in the same run.
func BenchmarkStateEncode(b *testing.B) {
	hs := make([][]byte, 20)
	for i := range hs {
		hs[i] = bytes.Repeat([]byte{byte(i)}, 32)
	}
	body := stateBody{Version: stateVersion, Gen: 7, Origin: "node-1.example/vramward", Epoch: 3, Key: "node-1+3a4b5c6d+AbCdEfGh", Seq: 1 << 20,
		Reserved: 1<<20 + 4096, Prev: hs[0], TreeSize: 1 << 20, Tree: hs, EpochStarted: time.Now(), SavedAt: time.Now(),
		LastCheckpoint: bytes.Repeat([]byte("n"), 400), Links: []trail.Link{{Seq: 1, Size: 1, Note: bytes.Repeat([]byte("n"), 400), Seg: hs[:10]}}}
	b.Run("append", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf, _ = appendState(buf[:0], &body)
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(&body)
		}
	})
}
