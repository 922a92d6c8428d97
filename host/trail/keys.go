// Package trail makes the audit trail a per-node transparency log: records
// (linked by package chain) are the leaves of an RFC 6962 Merkle tree, and
// the host signs checkpoints of that tree (C2SP tlog-checkpoint signed notes,
// Ed25519) that anyone can check with the node's public key.
//
// Each epoch has its own key. The checkpoint that ends an epoch is signed by
// the ending key and certifies the next epoch's public key; then the ending
// private key is erased. Whoever takes the node later holds only the current
// key: they can extend the log, not rewrite what an earlier epoch's
// checkpoints cover.
package trail

import (
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"filippo.io/edwards25519"
	"golang.org/x/mod/sumdb/note"
)

// PrivateKey is one epoch's signing key. The secret lives in one buffer that
// Destroy zeroes, and nowhere else: no hex, no JSON, no copy.
//
// crypto/ed25519 is not used to sign because it keeps an expanded copy of
// every private key it signs with in a process-wide cache that nobody can
// erase; signing here with edwards25519 directly keeps the secret in this
// buffer. The signatures are plain Ed25519 (RFC 8032's verification
// equation) with a random nonce, checked by the standard verifier. A key
// is safe for concurrent use: mu orders its signatures, the nonce made
// ahead and the erasure.
type PrivateKey struct {
	mu     sync.Mutex
	name   string
	pub    [32]byte
	secret *[32]byte // the secret scalar, canonical (reduced mod L); nil once destroyed
	// next is the nonce of the next signature, made ahead by Prepare.
	next *preparedNonce
	hash uint32
	vkey string
}

// preparedNonce is a signature's nonce made ahead of time: r, secret like
// the key (r and the signature give the key away), and R = rB, which is
// most of what a signature costs. One signature uses it, then it is
// zeroed; Destroy zeroes it with the secret.
type preparedNonce struct {
	r     [32]byte
	R     [32]byte
	ready bool
}

var errDestroyed = errors.New("epoch key was destroyed")

// SecretSize is the size of a key's secret, as a state file stores it.
const SecretSize = 32

// GenerateKey makes a key named name (the log's origin).
func GenerateKey(name string) (k *PrivateKey, err error) {
	eraseAfter(func() { k, err = generateKey(name) })
	return k, err
}

func generateKey(name string) (*PrivateKey, error) {
	var wide [64]byte
	defer clear(wide[:])
	if _, err := rand.Read(wide[:]); err != nil {
		return nil, fmt.Errorf("generate epoch key: %w", err)
	}
	var s edwards25519.Scalar
	defer func() { s = edwards25519.Scalar{} }()
	if _, err := s.SetUniformBytes(wide[:]); err != nil {
		return nil, fmt.Errorf("generate epoch key: %w", err)
	}
	k := &PrivateKey{name: name, secret: new([32]byte), next: new(preparedNonce)}
	b := s.Bytes() // a copy: erased at once
	copy(k.secret[:], b)
	clear(b)
	copy(k.pub[:], new(edwards25519.Point).ScalarBaseMult(&s).Bytes())
	return k, k.init()
}

// LoadKey rebuilds a key from a secret a state file holds; it copies secret
// into the key's own buffer (the caller zeroes its copy).
func LoadKey(name string, secret []byte) (k *PrivateKey, err error) {
	eraseAfter(func() { k, err = loadKey(name, secret) })
	return k, err
}

func loadKey(name string, secret []byte) (*PrivateKey, error) {
	if len(secret) != SecretSize {
		return nil, errors.New("epoch key: wrong size")
	}
	var s edwards25519.Scalar
	defer func() { s = edwards25519.Scalar{} }()
	if _, err := s.SetCanonicalBytes(secret); err != nil {
		return nil, fmt.Errorf("epoch key: %w", err)
	}
	k := &PrivateKey{name: name, secret: new([32]byte), next: new(preparedNonce)}
	copy(k.secret[:], secret)
	copy(k.pub[:], new(edwards25519.Point).ScalarBaseMult(&s).Bytes())
	return k, k.init()
}

func (k *PrivateKey) init() error {
	vkey, err := note.NewEd25519VerifierKey(k.name, k.pub[:])
	if err != nil {
		return fmt.Errorf("epoch key for origin %q: %w", k.name, err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return err
	}
	k.vkey, k.hash = vkey, v.KeyHash()
	return nil
}

// VerifierKey is the public key in signed-note verifier format
// (name+hash+base64).
func (k *PrivateKey) VerifierKey() string { return k.vkey }

// AppendSecret appends the secret, for the state file; the caller zeroes
// it after use. The copy is made inside eraseAfter (see secret.go), so the
// registers it passed through are erased.
func (k *PrivateKey) AppendSecret(dst []byte) []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	eraseAfter(func() { dst = append(dst, k.secret[:]...) })
	return dst
}

// Destroy zeroes the secret, and every signal frame that saved it; the key
// cannot sign again.
func (k *PrivateKey) Destroy() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.secret != nil {
		eraseAfter(func() {
			clear(k.secret[:])
			*k.next = preparedNonce{}
		})
		k.secret = nil
		clobberSignalFrames()
	}
}

// Name, KeyHash and Sign make the key a note.Signer.
func (k *PrivateKey) Name() string    { return k.name }
func (k *PrivateKey) KeyHash() uint32 { return k.hash }

// Sign makes an Ed25519 signature of msg: R = rB for a random r,
// S = r + H(R || A || msg)·s. It uses the nonce Prepare made, if any, and
// makes one otherwise.
func (k *PrivateKey) Sign(msg []byte) (sig []byte, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	eraseAfter(func() { sig, err = k.sign(msg) })
	return sig, err
}

// Prepare makes the next signature's nonce now, so that the Sign that
// follows costs a hash and a multiply-add: the host prepares while a
// sink's fsync runs, off the path of the next CRITICAL emit. A nonce is
// random and used once (Sign zeroes it), so making it early changes
// nothing a signature reveals, with one exception: a process run twice
// from one memory snapshot signs twice with it, which gives the key away
// (README, "Forward security"). A nonce made at signing time comes from
// the kernel at that moment: each copy of a process gets its own, and
// Linux reseeds after a VM snapshot is restored where the hypervisor
// announces it (vmgenid).
func (k *PrivateKey) Prepare() (err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.secret == nil {
		return errDestroyed
	}
	if k.next.ready {
		return nil
	}
	eraseAfter(func() { err = k.prepare() })
	return err
}

func (k *PrivateKey) prepare() error {
	var r edwards25519.Scalar
	defer func() { r = edwards25519.Scalar{} }()
	if err := randomScalar(&r); err != nil {
		return err
	}
	b := r.Bytes()
	copy(k.next.r[:], b)
	clear(b)
	copy(k.next.R[:], new(edwards25519.Point).ScalarBaseMult(&r).Bytes())
	k.next.ready = true
	return nil
}

// randomScalar sets r to a uniformly random scalar, for a nonce.
func randomScalar(r *edwards25519.Scalar) error {
	var wide [64]byte
	defer clear(wide[:])
	if _, err := rand.Read(wide[:]); err != nil {
		return err
	}
	_, err := r.SetUniformBytes(wide[:])
	return err
}

func (k *PrivateKey) sign(msg []byte) ([]byte, error) {
	if k.secret == nil {
		return nil, errDestroyed
	}
	var r, s, h edwards25519.Scalar
	defer func() { r, s = edwards25519.Scalar{}, edwards25519.Scalar{} }()
	var R []byte
	if k.next.ready {
		// Taken and zeroed before anything can fail: a nonce never signs
		// twice.
		_, err := r.SetCanonicalBytes(k.next.r[:])
		R = append(make([]byte, 0, 64), k.next.R[:]...)
		*k.next = preparedNonce{}
		if err != nil {
			return nil, err
		}
	} else {
		if err := randomScalar(&r); err != nil {
			return nil, err
		}
		R = new(edwards25519.Point).ScalarBaseMult(&r).Bytes()
	}
	if _, err := s.SetCanonicalBytes(k.secret[:]); err != nil {
		return nil, err
	}
	d := sha512.New()
	d.Write(R)
	d.Write(k.pub[:])
	d.Write(msg)
	if _, err := h.SetUniformBytes(d.Sum(nil)); err != nil {
		return nil, err
	}
	S := new(edwards25519.Scalar).MultiplyAdd(&h, &s, &r)
	return append(R, S.Bytes()...), nil
}

// IdentityPrefix starts the line of a public key file (state_dir/audit.pub)
// that names the log's identity key: the stable key that signs every
// checkpoint beside the epoch key, which witnesses pin for the origin.
const IdentityPrefix = "identity "

// PublicKeyText is what state_dir/audit.pub holds: the first epoch's key,
// which verifies the trail, and the log's identity key.
func PublicKeyText(firstKey, identity string) string {
	return firstKey + "\n" + IdentityPrefix + identity + "\n"
}

// IsKeyFile says whether a command-line key argument names a file rather
// than being the key itself (a key's name holds a '/', so a path cannot be
// told from it by its look alone).
func IsKeyFile(arg string) bool {
	if _, err := os.Stat(arg); err == nil {
		return true
	}
	return !strings.Contains(arg, "+")
}

// PublicKeys are a log's public keys: the first epoch's and, where the
// public key file names it, the identity key.
type PublicKeys struct {
	First    note.Verifier
	Identity note.Verifier
}

// ReadPublicKeys reads both keys from a public key file, or the first
// epoch's key given as the key itself.
func ReadPublicKeys(arg string) (PublicKeys, error) {
	first, _, err := ReadVerifierKey(arg)
	if err != nil {
		return PublicKeys{}, err
	}
	keys := PublicKeys{First: first}
	if IsKeyFile(arg) {
		data, err := os.ReadFile(arg)
		if err != nil {
			return keys, err
		}
		for _, line := range strings.Split(string(data), "\n") {
			if k, ok := strings.CutPrefix(strings.TrimSpace(line), IdentityPrefix); ok {
				if keys.Identity, err = note.NewVerifier(k); err != nil {
					return keys, fmt.Errorf("identity key: %w", err)
				}
			}
		}
	}
	return keys, nil
}

// ReadVerifierKey reads a public key given as a file or as the key itself:
// the first epoch's key (a public key file's first line).
func ReadVerifierKey(arg string) (note.Verifier, string, error) {
	text := arg
	if IsKeyFile(arg) {
		data, err := os.ReadFile(arg)
		if err != nil {
			return nil, "", fmt.Errorf("read public key: %w", err)
		}
		text = string(data)
	}
	text, _, _ = strings.Cut(strings.TrimSpace(text), "\n")
	text = strings.TrimSpace(text)
	v, err := note.NewVerifier(text)
	if err != nil {
		return nil, "", fmt.Errorf("public key %q: %w (want the signed-note verifier key from state_dir/audit.pub: name+hash+base64)", short(text), err)
	}
	return v, text, nil
}

func short(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// encodeB64 and decodeB64 are the standard base64 the notes use.
func encodeB64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func decodeB64(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }
