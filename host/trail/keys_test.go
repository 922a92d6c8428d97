package trail

import (
	"bytes"
	"crypto/ed25519"
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
