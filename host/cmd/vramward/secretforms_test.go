package main

import (
	"bufio"
	"bytes"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

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

// filesWithEndedKeys lists the files under dir holding any form of a key.
func filesWithEndedKeys(t *testing.T, dir string, ended [][]byte, forms func([]byte) [][]byte) []string {
	var found []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, k := range ended {
			for _, f := range forms(k) {
				if bytes.Contains(data, f) {
					found = append(found, p)
					return nil
				}
			}
		}
		return nil
	})
	must(t, err)
	return found
}

// TestEndedKeysLeaveNoTrace runs the host with one-second epochs and
// collects every epoch's key from the state dir while it is current (as
// root on the node could). Once an epoch has ended, its key is in no file
// under the state dir and nowhere in the running host's memory (read
// through /proc/PID/mem), neither raw nor as hex or base64.
func TestEndedKeysLeaveNoTrace(t *testing.T) {
	dir := t.TempDir()
	cfg := trailConfig(t, dir, "node-k")
	replaceInFile(t, cfg, "audit {\n", "audit {\n  epoch_duration = \"1s\"\n  checkpoint_interval = \"100ms\"\n")
	h := startHost(t, dir)
	h.waitStarted()
	state := filepath.Join(dir, "state")
	keys := map[uint64][]byte{} // epoch -> secret
	var origin string
	// current reads both slots as the host's own load does: a slot read
	// while the host rewrites it may be torn, and is taken only when its
	// secret gives the public key its body names.
	current := func() uint64 {
		var top uint64
		for _, slot := range []string{"chain.state.a", "chain.state.b"} {
			data, err := os.ReadFile(filepath.Join(state, slot))
			const magic = "vramward-state-2\n"
			head := len(magic) + trail.SecretSize + 4
			if err != nil || len(data) < head {
				continue
			}
			n := int(binary.BigEndian.Uint32(data[head-4 : head]))
			if n > len(data)-head {
				continue
			}
			var body struct {
				Origin string `json:"origin"`
				Epoch  uint64 `json:"epoch"`
				Key    string `json:"key"`
			}
			if json.Unmarshal(data[head:head+n], &body) != nil {
				continue
			}
			secret := append([]byte(nil), data[len(magic):len(magic)+trail.SecretSize]...)
			k, err := trail.LoadKey(body.Origin, secret)
			if err != nil || k.VerifierKey() != body.Key {
				continue // torn
			}
			if _, ok := keys[body.Epoch]; !ok {
				keys[body.Epoch] = secret
			}
			origin = body.Origin
			top = max(top, body.Epoch)
		}
		return top
	}
	for deadline := time.Now().Add(4500 * time.Millisecond); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		current()
	}
	now := current()
	var ended [][]byte
	epochOf := map[string]uint64{}
	for ep, k := range keys {
		if ep < now {
			ended = append(ended, k)
			epochOf[string(k)] = ep
		}
	}
	if len(ended) < 3 {
		t.Fatalf("only %d ended epochs seen (now in epoch %d)", len(ended), now)
	}
	forms := secretForms
	// At an epoch's end the host rewrites one slot, then the other: for a
	// moment the second still holds the ended key. What is checked is that
	// none stays: a hit is looked at again a little later.
	checkFiles := func(when string) {
		for try := 0; ; try++ {
			if found := filesWithEndedKeys(t, state, ended, forms); len(found) == 0 {
				return
			} else if try == 5 {
				t.Errorf("%s: %v hold an ended epoch's key", when, found)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	checkFiles("while running")

	// The host's memory, read as root on the node could: no ended key, in
	// any form, and no nonce any of them signed with (a nonce and its
	// signature give the key). A copy used to survive in the registers a
	// signal frame saved; trail's secret.go says how that is closed.
	if trail.SecretErasure != "runtime/secret" {
		if os.Getenv("VRAMWARD_CI") != "" {
			t.Fatalf("this build erases no secret (%s): make test sets GOEXPERIMENT=runtimesecret", trail.SecretErasure)
		}
		t.Skipf("this build erases no secret (%s): run it through make test", trail.SecretErasure)
	}
	endedKeys := map[uint64][]byte{}
	for _, k := range ended {
		endedKeys[epochOf[string(k)]] = k
	}
	nonces := signatureNonces(t, origin, filepath.Join(dir, "trail", "audit.log"), endedKeys)
	if len(nonces) < len(ended) {
		t.Fatalf("only %d signatures of %d ended keys found in the trail", len(nonces), len(ended))
	}
	pid := h.cmd.Process.Pid
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	must(t, err)
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		t.Skipf("cannot read the host's memory here: %v", err)
	}
	defer mem.Close()
	scanned, live := 0, false
	liveKey := keys[now]
	for _, l := range strings.Split(string(maps), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || f[1][0] != 'r' || (len(f) >= 6 && (f[5] == "[vvar]" || f[5] == "[vsyscall]" || f[5] == "[vvar_vclock]")) {
			continue
		}
		from, to, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		lo, _ := strconv.ParseUint(from, 16, 64)
		hi, _ := strconv.ParseUint(to, 16, 64)
		if hi-lo > 1<<30 {
			continue // a reservation, not memory in use
		}
		buf := make([]byte, hi-lo)
		n, _ := mem.ReadAt(buf, int64(lo))
		buf = buf[:n]
		scanned += n
		live = live || bytes.Contains(buf, liveKey)
		for _, k := range ended {
			for _, form := range forms(k) {
				if i := bytes.Index(buf, form); i >= 0 {
					t.Errorf("an ended epoch's key (epoch %d of %d, %d bytes form) is in the host's memory at %#x (%s); around it:\n%s", epochOf[string(k)], now, len(form), lo+uint64(i), l, hex.Dump(buf[max(0, i-256):min(len(buf), i+256)]))
				}
			}
		}
		for r, ep := range nonces {
			for _, form := range forms([]byte(r)) {
				if i := bytes.Index(buf, form); i >= 0 {
					t.Errorf("the nonce of a signature by epoch %d's key (%d bytes form) is in the host's memory at %#x (%s); around it:\n%s", ep, len(form), lo+uint64(i), l, hex.Dump(buf[max(0, i-256):min(len(buf), i+256)]))
				}
			}
		}
	}
	if scanned < 1<<20 {
		t.Fatalf("read only %d bytes of the host's memory", scanned)
	}
	// The control: the current key is in memory (in its one buffer), so the
	// scan would have seen an ended one; unless the epoch ended meanwhile.
	if !live && current() == now {
		t.Fatal("the scan did not find the current key either: it proves nothing")
	}
	h.signal(syscall.SIGTERM)
	if code := h.wait(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	checkFiles("after shutdown")
	if out := verifyCLI(t, dir, filepath.Join(dir, "trail", "audit.log")); !strings.HasPrefix(out, "OK: ") {
		t.Fatalf("verify: %s", out)
	}
}
