package vram

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func randBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(7, uint64(n)))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// The tree digest is what DESIGN.md defines, whatever the chunking.
func TestTreeDigestDefinition(t *testing.T) {
	for _, n := range []int{0, 1, LeafBytes - 1, LeafBytes, LeafBytes + 1, 5*LeafBytes + 123} {
		data := randBytes(n)
		var leaves []byte
		for off := 0; off < n; off += LeafBytes {
			d := sha256.Sum256(data[off:min(off+LeafBytes, n)])
			leaves = append(leaves, d[:]...)
		}
		want := sha256.Sum256(leaves)
		if got := TreeDigest(data, LeafBytes); got != want {
			t.Fatalf("%d bytes: tree digest differs from its definition", n)
		}
		for _, chunk := range []int{1000, LeafBytes, 3*LeafBytes + 7} {
			h := NewTreeHasher(LeafBytes, 3)
			for off := 0; off < n; off += chunk {
				h.Write(data[off:min(off+chunk, n)])
			}
			if h.Sum() != want {
				t.Fatalf("%d bytes in chunks of %d: digest differs", n, chunk)
			}
		}
	}
}

func sealed(t *testing.T, key []byte) *SealedShard {
	s := &SealedShard{ShardID: "llama-7b:0", Device: 1, DeviceUUID: "GPU-1234", Backend: BackendCUDA, Bytes: 1 << 30,
		Digest: sha256.Sum256([]byte("d")), LeafBytes: LeafBytes, FileSHA256: sha256.Sum256([]byte("f")),
		SealedAt: time.Date(2026, 11, 23, 1, 2, 3, 4, time.UTC)}
	var err error
	if s.Signature, err = Sign(key, s); err != nil {
		t.Fatal(err)
	}
	return s
}

// Changing any field, or the key, invalidates the signature.
func TestSignatureCoversEveryField(t *testing.T) {
	key, _ := DeriveSealKey([]byte("worker-token-0123456789"))
	if !SignatureValid(key, sealed(t, key)) {
		t.Fatal("a fresh seal does not verify")
	}
	edits := map[string]func(s *SealedShard){
		"shard_id": func(s *SealedShard) { s.ShardID = "llama-7b:1" }, "device": func(s *SealedShard) { s.Device = 0 },
		"uuid": func(s *SealedShard) { s.DeviceUUID = "GPU-9999" }, "backend": func(s *SealedShard) { s.Backend = BackendEmulated },
		"bytes": func(s *SealedShard) { s.Bytes++ }, "digest": func(s *SealedShard) { s.Digest[0] ^= 1 },
		"leaf": func(s *SealedShard) { s.LeafBytes = 4096 }, "file_sha256": func(s *SealedShard) { s.FileSHA256[31] ^= 1 },
		"sealed_at": func(s *SealedShard) { s.SealedAt = s.SealedAt.Add(time.Nanosecond) },
		"signature": func(s *SealedShard) { s.Signature[5] ^= 1 },
	}
	for name, edit := range edits {
		s := sealed(t, key)
		edit(s)
		if SignatureValid(key, s) {
			t.Errorf("editing %s keeps the signature valid", name)
		}
	}
	other, _ := DeriveSealKey([]byte("another-worker-token"))
	if SignatureValid(other, sealed(t, key)) {
		t.Error("a seal verifies under another worker's key")
	}
	// Field boundaries are unambiguous: moving bytes between two strings
	// changes the message.
	a, b := sealed(t, key), sealed(t, key)
	a.ShardID, a.DeviceUUID = "ab", "c"
	b.ShardID, b.DeviceUUID = "a", "bc"
	if bytes.Equal(SealMessage(a), SealMessage(b)) {
		t.Error("two different shards share a seal message")
	}
}

func TestFailureRoundTrip(t *testing.T) {
	in := &Failure{Op: "load_and_seal", Reason: ReasonAllocationFailed, Msg: "out of memory", ShardID: "s", Device: 2,
		ExpectedSHA256: "aa", ActualSHA256: "bb", RequestedBytes: 10, AvailableBytes: 5, Policy: "p", Violation: "v"}
	err := in.toStatus()
	if st, _ := status.FromError(err); st.Code() != codes.ResourceExhausted {
		t.Fatalf("code %v", st.Code())
	}
	out := fromStatus("load_and_seal", err)
	if !reflect.DeepEqual(out, in) {
		t.Fatalf("\n in %+v\nout %+v", in, out)
	}
	if !errors.Is(out, ReasonAllocationFailed) || fromStatus("x", errors.New("eof")).Reason != ReasonUnavailable {
		t.Fatal("reasons do not survive")
	}
}

func TestCheckShardID(t *testing.T) {
	for _, ok := range []string{"a", "llama-7b:shard.0_1", string(bytes.Repeat([]byte("x"), 128))} {
		if CheckShardID(ok) != nil {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", "-lead", "has space", "a/b", "ünï", string(bytes.Repeat([]byte("x"), 129)), "a\nb"} {
		if CheckShardID(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
