package hashread

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

func writeFile(t testing.TB, n int) (string, []byte) {
	t.Helper()
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(1, uint64(n)))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, b
}

// Whatever the parser reads, and however it reads it, the digest covers
// every byte once, in order.
func TestDigestWhateverTheParserReads(t *testing.T) {
	for _, size := range []int{0, 1, 1000, ChunkBytes - 1, ChunkBytes, ChunkBytes + 1, 3*ChunkBytes + 17} {
		p, want := writeFile(t, size)
		for _, prefix := range []int{0, 1, 4096, ChunkBytes + 5, size} {
			if prefix > size {
				continue
			}
			f, _ := os.Open(p)
			s := Start(context.Background(), f)
			got := make([]byte, prefix)
			if _, err := io.ReadFull(s, got); err != nil {
				t.Fatalf("size %d prefix %d: %v", size, prefix, err)
			}
			if !bytes.Equal(got, want[:prefix]) {
				t.Fatalf("size %d prefix %d: read different bytes", size, prefix)
			}
			d, err := s.Finish(int64(size))
			s.Close()
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			if d != sha256.Sum256(want) {
				t.Fatalf("size %d prefix %d: wrong digest", size, prefix)
			}
		}
	}
}

func TestSizeChangeIsAnError(t *testing.T) {
	p, b := writeFile(t, 5000)
	f, _ := os.Open(p)
	defer f.Close()
	s := Start(context.Background(), f)
	defer s.Close()
	if _, err := s.Finish(int64(len(b) + 1)); err == nil {
		t.Fatal("a size that differs from the bytes read was accepted")
	}
}

func TestCancel(t *testing.T) {
	p, _ := writeFile(t, 3*ChunkBytes)
	f, _ := os.Open(p)
	defer f.Close()
	ctx, cancel := context.WithCancel(context.Background())
	s := Start(ctx, f)
	cancel()
	if _, err := s.Finish(3 * ChunkBytes); err == nil {
		t.Fatal("a cancelled stream finished")
	}
	s.Close()
}
