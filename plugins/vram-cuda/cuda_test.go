package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/vramward/vramward/sdk/handshake"
	"github.com/vramward/vramward/sdk/plugintest"
	"github.com/vramward/vramward/sdk/vram"
	"github.com/vramward/vramward/sdk/vramtest"
)

// standInDriver builds gpu/testdata/fakecuda.c into a libcuda.so.1 in a
// temporary directory and returns the environment that makes the plugin's
// dlopen find it. It stands in for the NVIDIA driver where no GPU is, so
// that the cgo binding itself (symbols, contexts, pinned staging, pointer
// attributes, out-of-memory) runs; its device calls itself emulated.
func standInDriver(t *testing.T, extra ...string) []string {
	t.Helper()
	gcc := plugintest.RequireTool(t, "gcc")
	dir := t.TempDir()
	out, err := exec.Command(gcc, "-shared", "-fPIC", "-O2", "-o", filepath.Join(dir, "libcuda.so.1"), "gpu/testdata/fakecuda.c").CombinedOutput()
	if err != nil {
		t.Fatalf("build the stand-in driver: %v\n%s", err, out)
	}
	return append([]string{"LD_LIBRARY_PATH=" + dir}, extra...)
}

// TestCUDABindingOverStandInDriver runs the conformance harness against
// the tamper build with backend = "cuda", through the real cgo code, over
// the stand-in driver.
func TestCUDABindingOverStandInDriver(t *testing.T) {
	ctl := filepath.Join(t.TempDir(), "tamper")
	env := standInDriver(t, "VRAMWARD_TAMPER_FILE="+ctl)
	vramtest.RunBinary(t, tamperBinary, []byte(`{"backend": "cuda"}`), env, vramtest.WithCorrupt(corruptVia(ctl)))
}

// TestCUDAManagedMemoryRefused: memory the driver reports as managed is a
// policy violation, freed.
func TestCUDAManagedMemoryRefused(t *testing.T) {
	env := standInDriver(t, "FAKECUDA_MANAGED=1")
	raw, _ := plugintest.Binary(t, binary, handshake.KindVramBackend, vram.PluginForHost(nil), env...)
	c := raw.(*vram.Client)
	ctx := context.Background()
	dir := t.TempDir()
	if backend, err := c.Configure(ctx, []byte(`{"backend": "cuda"}`), vram.Models{AllowedRoots: []string{dir}}); err != nil || backend != vram.BackendCUDA {
		t.Fatalf("configure: %q %v", backend, err)
	}
	p := filepath.Join(dir, "m.bin")
	if err := os.WriteFile(p, []byte("weights"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := c.LoadAndSeal(ctx, p, "e6b5d5d5a7f59ad1e1c1e0bd0c0d1c70fdb4b88a1e5a6b3b4c3e6f0b4f3b4d67", "m", 0)
	var f *vram.Failure
	if !errors.As(err, &f) || f.Reason != vram.ReasonPolicyViolation || f.Violation != "managed (unified) memory" {
		t.Fatalf("want POLICY_VIOLATION for managed memory, got %v", err)
	}
	st, err := c.Stats(ctx)
	if err != nil || st[0].UsedBytes != 0 || st[0].Shards != 0 {
		t.Fatalf("after the refusal: %+v %v", st, err)
	}
}

// TestCUDALargeShardPipelined: a shard of several staging pieces (and a
// ragged end) goes through both pinned buffers in turn, both ways.
func TestCUDALargeShardPipelined(t *testing.T) {
	env := standInDriver(t)
	raw, _ := plugintest.Binary(t, binary, handshake.KindVramBackend, vram.PluginForHost(nil), env...)
	c := raw.(*vram.Client)
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := c.Configure(ctx, []byte(`{"backend": "cuda"}`), vram.Models{AllowedRoots: []string{dir}}); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 21<<20+12345)
	for i := range data {
		data[i] = byte(i*131 + i>>13)
	}
	p := filepath.Join(dir, "big.bin")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	l, err := c.LoadAndSeal(ctx, p, hex.EncodeToString(sum[:]), "big", 0)
	if err != nil {
		t.Fatal(err)
	}
	if l.Shard.Digest != vram.TreeDigest(data, vram.LeafBytes) {
		t.Fatal("the read-back digest differs from the file's tree digest")
	}
	if v, err := c.Verify(ctx, l.Shard); err != nil || v.Result != vram.VerifyOK {
		t.Fatalf("verify: %v %+v", err, v)
	}
}

// TestConformanceRealCUDA runs the harness with backend = "cuda" on a real
// GPU, where there is one: set VRAMWARD_TEST_CUDA=1 on a GPU node.
func TestConformanceRealCUDA(t *testing.T) {
	if os.Getenv("VRAMWARD_TEST_CUDA") != "1" {
		t.Skip("set VRAMWARD_TEST_CUDA=1 on a machine with an NVIDIA GPU")
	}
	ctl := filepath.Join(t.TempDir(), "tamper")
	vramtest.RunBinary(t, tamperBinary, []byte(`{"backend": "cuda"}`), []string{"VRAMWARD_TAMPER_FILE=" + ctl}, vramtest.WithCorrupt(corruptVia(ctl)))
}
