package main

import (
	"bufio"
	"bytes"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"math/big"
	"os"
	"strings"
	"testing"

	"filippo.io/edwards25519"

	"github.com/vramward/vramward/host/trail"
	"github.com/vramward/vramward/sdk/audit"
)

// The forms a scalar takes in memory while edwards25519 works with it,
// besides its 32 canonical bytes: a Scalar holds it in the Montgomery
// domain (x·2^256 mod L, four little-endian 64-bit limbs), and a scalar
// multiplication by the base point first recodes it into 64 signed radix-16
// digits. A copy of an ended key or of a nonce left in any of them is as
// good as the key.

// groupOrder is L, the order of the Ed25519 base point.
var groupOrder, _ = new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)

func littleEndian(b []byte) *big.Int {
	be := make([]byte, len(b))
	for i := range b {
		be[len(b)-1-i] = b[i]
	}
	return new(big.Int).SetBytes(be)
}

func montgomeryForm(k []byte) []byte {
	x := new(big.Int).Lsh(littleEndian(k), 256)
	x.Mod(x, groupOrder)
	var out [32]byte
	x.FillBytes(out[:])
	for i := 0; i < 16; i++ {
		out[i], out[31-i] = out[31-i], out[i]
	}
	return out[:]
}

func radix16Form(k []byte) []byte {
	var d [64]int8
	for i := 0; i < 32; i++ {
		d[2*i], d[2*i+1] = int8(k[i]&15), int8(k[i]>>4)
	}
	for i := 0; i < 63; i++ {
		carry := (d[i] + 8) >> 4
		d[i] -= carry << 4
		d[i+1] += carry
	}
	out := make([]byte, 64)
	for i, v := range d {
		out[i] = byte(v)
	}
	return out
}

// secretForms is every form of a 32-byte secret scalar the memory scan
// looks for: raw, hex (both cases), base64 (both alphabets) and the two
// forms the arithmetic makes of it.
func secretForms(k []byte) [][]byte {
	return [][]byte{k, []byte(hex.EncodeToString(k)), []byte(strings.ToUpper(hex.EncodeToString(k))),
		[]byte(base64.StdEncoding.EncodeToString(k)), []byte(base64.RawURLEncoding.EncodeToString(k)),
		montgomeryForm(k), radix16Form(k)}
}

// signatureNonces rebuilds the nonce r of every checkpoint signature in the
// trail file made by one of the keys in secrets (epoch -> secret): knowing
// the key, r = S - H(R || A || msg)·s. Each r is checked against its R, so
// a wrong derivation fails the test instead of scanning for nothing. The
// result maps each nonce to the epoch whose key made it.
func signatureNonces(t *testing.T, origin, trailFile string, secrets map[uint64][]byte) map[string]uint64 {
	t.Helper()
	type key struct {
		epoch uint64
		s     *edwards25519.Scalar
		pub   []byte
	}
	byHash := map[uint32]key{}
	for ep, secret := range secrets {
		k, err := trail.LoadKey(origin, append([]byte(nil), secret...))
		must(t, err)
		s, err := new(edwards25519.Scalar).SetCanonicalBytes(secret)
		must(t, err)
		byHash[k.KeyHash()] = key{ep, s, new(edwards25519.Point).ScalarBaseMult(s).Bytes()}
	}
	f, err := os.Open(trailFile)
	must(t, err)
	defer f.Close()
	nonces := map[string]uint64{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		e, err := audit.ParseJSON(sc.Bytes())
		if err != nil || e.Type != audit.AuditCheckpoint {
			continue
		}
		v, _ := e.Field("note")
		signed, err := base64.StdEncoding.DecodeString(v.String())
		must(t, err)
		text, sigs, ok := bytes.Cut(signed, []byte("\n\n"))
		if !ok {
			t.Fatalf("a checkpoint note without signatures: %q", signed)
		}
		msg := append(text, '\n')
		for _, line := range strings.Split(strings.TrimSuffix(string(sigs), "\n"), "\n") {
			fields := strings.Fields(line)
			raw, err := base64.StdEncoding.DecodeString(fields[len(fields)-1])
			if err != nil || len(raw) != 4+64 {
				t.Fatalf("a signature line %q", line)
			}
			k, ok := byHash[binary.BigEndian.Uint32(raw[:4])]
			if !ok {
				continue // the identity key's, or a current epoch's
			}
			R, S := raw[4:36], raw[36:]
			d := sha512.New()
			d.Write(R)
			d.Write(k.pub)
			d.Write(msg)
			h, err := new(edwards25519.Scalar).SetUniformBytes(d.Sum(nil))
			must(t, err)
			sc, err := new(edwards25519.Scalar).SetCanonicalBytes(S)
			must(t, err)
			r := new(edwards25519.Scalar).Subtract(sc, new(edwards25519.Scalar).Multiply(h, k.s))
			if !bytes.Equal(new(edwards25519.Point).ScalarBaseMult(r).Bytes(), R) {
				t.Fatalf("the nonce derived for a signature of epoch %d does not give its R", k.epoch)
			}
			nonces[string(r.Bytes())] = k.epoch
		}
	}
	must(t, sc.Err())
	return nonces
}
