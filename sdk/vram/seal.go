package vram

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"runtime"
	"sync"
)

// DeriveSealKey derives the key seals are signed under from the worker
// token. Only the host does it: neither the token nor the key ever reaches
// a plugin, so a backend cannot vouch for its own shards.
func DeriveSealKey(token []byte) ([]byte, error) {
	return hkdf.Key(sha256.New, token, nil, "vramward/seal-key/v1", 32)
}

// SealMessage is the byte string a seal's signature covers: every field of
// the shard but the signature, each length-prefixed so that no two shards
// share it.
func SealMessage(s *SealedShard) []byte {
	var b []byte
	str := func(v string) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	b = append(b, "vramward/seal/v2"...)
	str(s.WorkerID)
	str(s.ShardID)
	b = binary.BigEndian.AppendUint32(b, s.Device)
	str(s.DeviceUUID)
	str(s.Backend)
	b = binary.BigEndian.AppendUint64(b, s.Bytes)
	b = append(b, s.Digest[:]...)
	b = binary.BigEndian.AppendUint32(b, s.LeafBytes)
	b = append(b, s.FileSHA256[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(s.SealedAt.UnixNano()))
	return b
}

// Sign computes the seal's signature: HMAC-SHA256 over SealMessage under a
// key derived by HKDF-SHA256 from the seal key with the same message as
// info, so every seal has its own key.
func Sign(sealKey []byte, s *SealedShard) ([32]byte, error) {
	var sig [32]byte
	if len(sealKey) < 32 {
		return sig, fmt.Errorf("seal key is %d bytes, want 32", len(sealKey))
	}
	msg := SealMessage(s)
	k, err := hkdf.Key(sha256.New, sealKey, nil, string(msg), 32)
	if err != nil {
		return sig, err
	}
	m := hmac.New(sha256.New, k)
	m.Write(msg)
	copy(sig[:], m.Sum(nil))
	return sig, nil
}

// SignatureValid checks s.Signature in constant time.
func SignatureValid(sealKey []byte, s *SealedShard) bool {
	want, err := Sign(sealKey, s)
	return err == nil && hmac.Equal(want[:], s.Signature[:])
}

// TreeDigest is SHA-256 over the concatenated SHA-256s of the data's
// leafBytes leaves (the last may be shorter; empty data has no leaves).
func TreeDigest(data []byte, leafBytes int) [32]byte {
	t := NewTreeHasher(leafBytes, 0)
	t.Write(data)
	return t.Sum()
}

// TreeHasher computes a tree digest over data written in chunks, hashing
// the leaves of each chunk on every core. Chunks may be of any size; a
// leaf that straddles two chunks is carried over.
type TreeHasher struct {
	leaf    int
	workers int
	top     io.Writer
	sum     func() []byte
	carry   []byte
	digests []byte
}

// NewTreeHasher hashes leaves of leafBytes on workers goroutines (0: one a
// core).
func NewTreeHasher(leafBytes, workers int) *TreeHasher {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	h := sha256.New()
	return &TreeHasher{leaf: leafBytes, workers: workers, top: h, sum: func() []byte { return h.Sum(nil) }}
}

// Write adds data; it never fails.
func (t *TreeHasher) Write(p []byte) (int, error) {
	n := len(p)
	if len(t.carry) > 0 {
		k := min(t.leaf-len(t.carry), len(p))
		t.carry = append(t.carry, p[:k]...)
		p = p[k:]
		if len(t.carry) == t.leaf {
			d := sha256.Sum256(t.carry)
			t.top.Write(d[:])
			t.carry = t.carry[:0]
		}
	}
	whole := len(p) / t.leaf
	t.hashLeaves(p[:whole*t.leaf])
	if rest := p[whole*t.leaf:]; len(rest) > 0 {
		t.carry = append(t.carry, rest...)
	}
	return n, nil
}

// hashLeaves hashes whole leaves in parallel and adds their digests in
// order.
func (t *TreeHasher) hashLeaves(p []byte) {
	leaves := len(p) / t.leaf
	if leaves == 0 {
		return
	}
	if cap(t.digests) < leaves*32 {
		t.digests = make([]byte, leaves*32)
	}
	out := t.digests[:leaves*32]
	workers := min(t.workers, leaves)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < leaves; i += workers {
				d := sha256.Sum256(p[i*t.leaf : (i+1)*t.leaf])
				copy(out[i*32:], d[:])
			}
		}(w)
	}
	wg.Wait()
	t.top.Write(out)
}

// Sum finishes the digest (the carried partial leaf is the last leaf).
func (t *TreeHasher) Sum() [32]byte {
	if len(t.carry) > 0 {
		d := sha256.Sum256(t.carry)
		t.top.Write(d[:])
		t.carry = t.carry[:0]
	}
	var out [32]byte
	copy(out[:], t.sum())
	return out
}
