package trail

import (
	"bytes"
	"crypto/ed25519"
	"sync"
	"testing"
)

// A signature made with a prepared nonce is plain Ed25519, checked by the
// standard verifier; a nonce signs once, and Destroy zeroes one prepared
// and not yet used.
func TestPreparedNonceSignsOnce(t *testing.T) {
	k, err := GenerateKey("keys.example/log")
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("checkpoint body\n")
	var rs [][]byte
	for i := range 4 {
		if i%2 == 0 {
			// Preparing twice keeps the one nonce: only a signature uses
			// it up.
			for range 2 {
				if err := k.Prepare(); err != nil {
					t.Fatal(err)
				}
			}
			if !k.next.ready {
				t.Fatal("Prepare left no nonce")
			}
		}
		sig, err := k.Sign(msg)
		if err != nil {
			t.Fatal(err)
		}
		if !ed25519.Verify(ed25519.PublicKey(k.pub[:]), msg, sig) {
			t.Fatalf("signature %d (prepared: %v) does not verify", i, i%2 == 0)
		}
		if *k.next != (preparedNonce{}) {
			t.Fatalf("signature %d left its nonce behind", i)
		}
		for j, r := range rs {
			if bytes.Equal(r, sig[:32]) {
				t.Fatalf("signatures %d and %d share R: a nonce signed twice", j, i)
			}
		}
		rs = append(rs, sig[:32])
	}

	if err := k.Prepare(); err != nil {
		t.Fatal(err)
	}
	next := k.next
	k.Destroy()
	if *next != (preparedNonce{}) {
		t.Fatal("Destroy left the prepared nonce in memory")
	}
	if err := k.Prepare(); err == nil {
		t.Fatal("a destroyed key prepared a nonce")
	}
	if _, err := k.Sign(msg); err == nil {
		t.Fatal("a destroyed key signed")
	}
}

// Signatures and nonces made ahead from many goroutines at once (a key is
// a note.Signer, which callers may share): each verifies, and no two share
// a nonce. Run under -race, it also finds unguarded access to the nonce.
func TestConcurrentSigningNeverReusesANonce(t *testing.T) {
	k, err := GenerateKey("keys.example/log")
	if err != nil {
		t.Fatal(err)
	}
	defer k.Destroy()
	msg := []byte("checkpoint body\n")
	const workers, each = 4, 50
	sigs := make(chan []byte, workers*each)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if (w+i)%2 == 0 {
					if err := k.Prepare(); err != nil {
						t.Error(err)
						return
					}
				}
				sig, err := k.Sign(msg)
				if err != nil {
					t.Error(err)
					return
				}
				sigs <- sig
			}
		})
	}
	wg.Wait()
	close(sigs)
	seen := map[string]bool{}
	for sig := range sigs {
		if !ed25519.Verify(ed25519.PublicKey(k.pub[:]), msg, sig) {
			t.Fatal("a signature does not verify")
		}
		if seen[string(sig[:32])] {
			t.Fatal("two signatures share R: a nonce signed twice")
		}
		seen[string(sig[:32])] = true
	}
	if len(seen) != workers*each {
		t.Fatalf("%d signatures, want %d", len(seen), workers*each)
	}
}
