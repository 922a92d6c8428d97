// Package vramtest is the conformance harness for VRAM backends. A backend
// author runs it from a normal `go test`:
//
//	vramtest.Run(t, func(t *testing.T) vram.Backend { return mybackend.New(nil) }, config)
//	vramtest.RunBinary(t, "bin/vramward-plugin-mybackend", config)
//
// with config the JSON config block to test under. Every check crosses the
// real gRPC boundary through the SDK's Serve and Client, and recomputes
// what the backend claims (file SHA-256, tree digest) itself; a backend
// must return its seals unsigned (the host signs).
package vramtest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/vramward/vramward/sdk/handshake"
	"github.com/vramward/vramward/sdk/plugintest"
	"github.com/vramward/vramward/sdk/vram"
)

// Option changes the harness.
type Option func(*options)

type options struct {
	corrupt func(t *testing.T, c *vram.Client, shardID string)
}

// WithCorrupt lets the harness check tamper detection: corrupt must change
// one byte of the shard's device memory (a test-only hook of the backend).
func WithCorrupt(fn func(t *testing.T, c *vram.Client, shardID string)) Option {
	return func(o *options) { o.corrupt = fn }
}

type connector func(t *testing.T) *vram.Client

// Run checks a backend served in this process.
func Run(t *testing.T, newBackend func(t *testing.T) vram.Backend, config []byte, opts ...Option) {
	run(t, func(t *testing.T) *vram.Client {
		p := vram.PluginForBackend(newBackend(t), nil).WithClient()
		t.Cleanup(func() { _ = p.Close() })
		return plugintest.InProcess(t, handshake.KindVramBackend, p).(*vram.Client)
	}, config, opts)
}

// RunBinary checks a built plugin binary, one process for each check; env
// is added to its environment.
func RunBinary(t *testing.T, binary string, config []byte, env []string, opts ...Option) {
	run(t, func(t *testing.T) *vram.Client {
		raw, _ := plugintest.Binary(t, binary, handshake.KindVramBackend, vram.PluginForHost(nil), env...)
		return raw.(*vram.Client)
	}, config, opts)
}

func run(t *testing.T, connect connector, config []byte, opts []Option) {
	o := &options{}
	for _, opt := range opts {
		opt(o)
	}
	checks := []struct {
		name string
		fn   func(t *testing.T, e *env)
	}{
		{"SealRecomputed", checkSeal},
		{"VerifyOK", checkVerifyOK},
		{"EditedDigestIsAMismatch", checkEdited},
		{"IntegrityViolationFreesMemory", checkIntegrity},
		{"ReleaseThenNotResident", checkRelease},
		{"BadShardIDs", checkShardIDs},
		{"DuplicateShard", checkDuplicate},
		{"DeviceNotFound", checkDevice},
		{"AllocationFailed", checkAllocation},
		{"NotARegularFile", checkFIFO},
		{"ConcurrentShards", checkConcurrent},
		{"TamperDetected", checkTamper},
		{"ConfinedToTheAllowedRoots", checkConfined},
	}
	t.Run("BeforeConfigure", func(t *testing.T) {
		c := connect(t)
		if _, err := c.Devices(plugintest.Context(t)); !isReason(err, vram.ReasonNotConfigured) {
			t.Fatalf("Devices before Configure: %v", err)
		}
		if _, err := c.Configure(plugintest.Context(t), config, vram.Models{AllowedRoots: []string{"relative/root"}}); !isReason(err, vram.ReasonInvalidArgument) {
			t.Fatalf("a relative allowed root: %v", err)
		}
	})
	t.Run("ConfigureOnce", func(t *testing.T) {
		e := newEnv(t, connect, config, o)
		if _, err := e.c.Configure(plugintest.Context(t), config, vram.Models{AllowedRoots: []string{e.dir}}); !isReason(err, vram.ReasonConfigured) {
			t.Fatalf("second Configure: %v", err)
		}
	})
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) { c.fn(t, newEnv(t, connect, config, o)) })
	}
}

func isReason(err error, r vram.Reason) bool {
	var f *vram.Failure
	return errors.As(err, &f) && f.Reason == r
}

func wantReason(t *testing.T, err error, r vram.Reason) *vram.Failure {
	t.Helper()
	var f *vram.Failure
	if !errors.As(err, &f) || f.Reason != r {
		t.Fatalf("want %s, got %v", r, err)
	}
	return f
}

// env is a configured backend and a directory of model files.
type env struct {
	c       *vram.Client
	backend string
	dir     string
	o       *options
}

func newEnv(t *testing.T, connect connector, config []byte, o *options) *env {
	t.Helper()
	e := &env{c: connect(t), dir: t.TempDir(), o: o}
	var err error
	if e.backend, err = e.c.Configure(plugintest.Context(t), config, vram.Models{AllowedRoots: []string{e.dir}}); err != nil {
		t.Fatalf("Configure(%s): %v", config, err)
	}
	return e
}

// file writes n pseudo-random bytes and returns the path, the bytes'
// SHA-256 and their tree digest.
func (e *env) file(t *testing.T, name string, n int) (string, [32]byte, [32]byte) {
	t.Helper()
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), uint64(len(name))))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, sha256.Sum256(b), vram.TreeDigest(b, vram.LeafBytes)
}

func hexOf(b [32]byte) string { return fmt.Sprintf("%x", b) }

// checkConfined: a model outside the allowed roots, or reached through a
// symlink that leaves them, is refused with PATH_TRAVERSAL before any byte
// of it is read, and nothing is allocated.
func checkConfined(t *testing.T, e *env) {
	ctx := plugintest.Context(t)
	outside := filepath.Join(t.TempDir(), "secret.bin")
	b := []byte("not a model: a file outside the roots")
	if err := os.WriteFile(outside, b, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	link := filepath.Join(e.dir, "link.bin")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{outside, link, filepath.Join(e.dir, "..", filepath.Base(e.dir), "link.bin")} {
		_, err := e.c.LoadAndSeal(ctx, p, hexOf(sum), "confined", 0)
		var f *vram.Failure
		if !errors.As(err, &f) || f.Reason != vram.ReasonPathTraversal {
			t.Errorf("LoadAndSeal(%s): want PATH_TRAVERSAL, got %v", p, err)
		} else if strings.Contains(f.Msg, hexOf(sum)) {
			t.Errorf("the refusal of %s tells the file's SHA-256", p)
		}
	}
	st, err := e.c.Stats(ctx)
	if err != nil || st[0].Shards != 0 {
		t.Errorf("after the refusals: %+v %v", st, err)
	}
}

func (e *env) load(t *testing.T, id string, n int) *vram.Loaded {
	t.Helper()
	p, sum, _ := e.file(t, id+".bin", n)
	l, err := e.c.LoadAndSeal(plugintest.Context(t), p, hexOf(sum), id, 0)
	if err != nil {
		t.Fatalf("LoadAndSeal %s: %v", id, err)
	}
	return l
}

func checkSeal(t *testing.T, e *env) {
	ctx := plugintest.Context(t)
	devs, err := e.c.Devices(ctx)
	if err != nil || len(devs) == 0 {
		t.Fatalf("Devices: %v %v", devs, err)
	}
	for _, d := range devs {
		if d.Backend != e.backend {
			t.Fatalf("device %d is labelled %q by a %q backend", d.Index, d.Backend, e.backend)
		}
	}
	const n = 3*vram.LeafBytes*16 + 12345 // not a whole number of leaves
	p, sum, tree := e.file(t, "model.bin", n)
	before := usedOn(t, e, 0)
	l, err := e.c.LoadAndSeal(ctx, p, hexOf(sum), "model:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	s := l.Shard
	switch {
	case s.ShardID != "model:0" || s.Device != 0 || s.Bytes != n || s.LeafBytes != vram.LeafBytes:
		t.Fatalf("shard %+v", s)
	case s.FileSHA256 != sum:
		t.Fatal("the seal's file SHA-256 is not the file's")
	case s.Digest != tree:
		t.Fatal("the seal's digest is not the tree digest of the file's bytes")
	case s.Backend != e.backend || s.DeviceUUID != devs[0].UUID:
		t.Fatalf("the seal names backend %q, device %q; want %q, %q", s.Backend, s.DeviceUUID, e.backend, devs[0].UUID)
	case s.Signature != [32]byte{}:
		t.Fatal("the backend signed the seal: only the host holds the seal key")
	case l.AllocatedBytes < n:
		t.Fatalf("allocated %d bytes for %d", l.AllocatedBytes, n)
	}
	st, err := e.c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st[0].Shards != 1 || st[0].SealedBytes != n || st[0].UsedBytes < before+n {
		t.Fatalf("stats after the load: %+v (used before %d)", st[0], before)
	}
}

func usedOn(t *testing.T, e *env, dev int) uint64 {
	st, err := e.c.Stats(plugintest.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	return st[dev].UsedBytes
}

func checkVerifyOK(t *testing.T, e *env) {
	l := e.load(t, "v", 2*vram.LeafBytes+1)
	for i := 0; i < 3; i++ {
		v, err := e.c.Verify(plugintest.Context(t), l.Shard)
		if err != nil || v.Result != vram.VerifyOK || v.Actual != l.Shard.Digest {
			t.Fatalf("verify %d: %v %+v", i, err, v)
		}
	}
}

// checkEdited: a shard whose digest is not what its memory holds is
// reported as DIGEST_MISMATCH with the digest read back, and the memory it
// names is the shard's, not another's.
func checkEdited(t *testing.T, e *env) {
	l := e.load(t, "f", vram.LeafBytes)
	edited := l.Shard
	edited.Digest[0] ^= 1
	v, err := e.c.Verify(plugintest.Context(t), edited)
	if err != nil || v.Result != vram.VerifyDigestMismatch || v.Actual != l.Shard.Digest {
		t.Fatalf("edited digest: %v %+v", err, v)
	}
}

func checkIntegrity(t *testing.T, e *env) {
	p, sum, _ := e.file(t, "i.bin", vram.LeafBytes*3)
	before := usedOn(t, e, 0)
	wrong := sha256.Sum256([]byte("not the file"))
	_, err := e.c.LoadAndSeal(plugintest.Context(t), p, hexOf(wrong), "i", 0)
	f := wantReason(t, err, vram.ReasonIntegrityViolation)
	if f.ExpectedSHA256 != hexOf(wrong) || f.ActualSHA256 != hexOf(sum) || f.ShardID != "i" {
		t.Fatalf("failure %+v", f)
	}
	if after := usedOn(t, e, 0); after != before {
		t.Fatalf("device memory used %d before, %d after a refused load: not freed", before, after)
	}
	// The id is free again and the right digest loads.
	if _, err := e.c.LoadAndSeal(plugintest.Context(t), p, hexOf(sum), "i", 0); err != nil {
		t.Fatal(err)
	}
}

func checkRelease(t *testing.T, e *env) {
	l := e.load(t, "r", vram.LeafBytes*2)
	freed, _, err := e.c.Release(plugintest.Context(t), "r")
	if err != nil || freed != l.Shard.Bytes {
		t.Fatalf("release: freed %d, %v", freed, err)
	}
	if v, err := e.c.Verify(plugintest.Context(t), l.Shard); err != nil || v.Result != vram.VerifyNotResident {
		t.Fatalf("verify after release: %v %+v", err, v)
	}
	_, _, err = e.c.Release(plugintest.Context(t), "r")
	wantReason(t, err, vram.ReasonShardNotFound)
}

func checkShardIDs(t *testing.T, e *env) {
	p, sum, _ := e.file(t, "s.bin", 1000)
	for _, id := range []string{"", "-x", "a b", "../etc", "x\ny", string(make([]byte, 200))} {
		_, err := e.c.LoadAndSeal(plugintest.Context(t), p, hexOf(sum), id, 0)
		wantReason(t, err, vram.ReasonInvalidShardID)
	}
	_, err := e.c.LoadAndSeal(plugintest.Context(t), p, "not-hex", "ok", 0)
	wantReason(t, err, vram.ReasonInvalidArgument)
}

func checkDuplicate(t *testing.T, e *env) {
	e.load(t, "d", 1000)
	p, sum, _ := e.file(t, "d2.bin", 1000)
	_, err := e.c.LoadAndSeal(plugintest.Context(t), p, hexOf(sum), "d", 0)
	wantReason(t, err, vram.ReasonShardExists)
}

func checkDevice(t *testing.T, e *env) {
	p, sum, _ := e.file(t, "dev.bin", 1000)
	_, err := e.c.LoadAndSeal(plugintest.Context(t), p, hexOf(sum), "dev", 9999)
	wantReason(t, err, vram.ReasonDeviceNotFound)
}

// checkAllocation asks for one byte more than the device has free, with a
// sparse file (no disk space, no read: the allocation fails first).
func checkAllocation(t *testing.T, e *env) {
	devs, err := e.c.Devices(plugintest.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(e.dir, "huge.bin")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	want := devs[0].FreeBytes + 1
	if err := f.Truncate(int64(want)); err != nil {
		t.Skipf("cannot make a %d-byte sparse file here: %v", want, err)
	}
	f.Close()
	_, err = e.c.LoadAndSeal(plugintest.Context(t), p, hexOf(sha256.Sum256(nil)), "huge", 0)
	fl := wantReason(t, err, vram.ReasonAllocationFailed)
	if fl.RequestedBytes != want || fl.AvailableBytes >= want {
		t.Fatalf("failure names requested %d available %d; want %d and less", fl.RequestedBytes, fl.AvailableBytes, want)
	}
}

func checkFIFO(t *testing.T, e *env) {
	p := filepath.Join(e.dir, "fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := e.c.LoadAndSeal(plugintest.Context(t), p, hexOf(sha256.Sum256(nil)), "fifo", 0)
	wantReason(t, err, vram.ReasonInvalidArgument)
}

func checkConcurrent(t *testing.T, e *env) {
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id := fmt.Sprintf("c%d", i)
			p, sum, _ := e.file(t, id, vram.LeafBytes*(i+1)+i)
			l, err := e.c.LoadAndSeal(plugintest.Context(t), p, hexOf(sum), id, 0)
			if err != nil {
				errs <- err
				return
			}
			v, err := e.c.Verify(plugintest.Context(t), l.Shard)
			if err == nil && v.Result != vram.VerifyOK {
				err = fmt.Errorf("%s: %s", id, v.Result)
			}
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func checkTamper(t *testing.T, e *env) {
	if e.o.corrupt == nil {
		t.Skip("no tamper hook given (WithCorrupt)")
	}
	l := e.load(t, "t", vram.LeafBytes*4+99)
	e.o.corrupt(t, e.c, "t")
	v, err := e.c.Verify(plugintest.Context(t), l.Shard)
	if err != nil || v.Result != vram.VerifyDigestMismatch || v.Actual == l.Shard.Digest || v.Expected != l.Shard.Digest {
		t.Fatalf("verify after corrupting one byte: %v %+v", err, v)
	}
}
