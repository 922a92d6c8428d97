package core

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"

	"github.com/vramward/vramward/plugins/vram-cuda/gpu"
	"github.com/vramward/vramward/plugins/vram-cuda/internal/telemetry"
	"github.com/vramward/vramward/sdk/vram"
	"github.com/vramward/vramward/sdk/vramtest"
)

const emulatedConfig = `{"backend": "emulated", "emulated_device_bytes": 67108864}`

func TestConformanceEmulated(t *testing.T) {
	var current *Core
	vramtest.Run(t, func(t *testing.T) vram.Backend {
		current = New(nil)
		return current
	}, []byte(emulatedConfig), vramtest.WithCorrupt(func(t *testing.T, _ *vram.Client, id string) {
		if err := current.corrupt(id, 12345); err != nil {
			t.Fatal(err)
		}
	}))
}

func configure(t *testing.T, cfg string) (*Core, error) {
	t.Helper()
	vals, err := Schema.Decode([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	c := New(nil)
	t.Cleanup(func() { _ = c.Close() })
	_, err = c.Configure(context.Background(), vals)
	return c, err
}

// Without the NVIDIA driver, backend = "cuda" refuses to start and says
// what is missing; "auto" falls back to emulated.
func TestCUDAUnavailableHere(t *testing.T) {
	if _, err := gpu.OpenCUDA(); err == nil {
		t.Skip("this machine has a CUDA device")
	}
	_, err := configure(t, `{"backend": "cuda"}`)
	var f *vram.Failure
	if !errors.As(err, &f) || f.Reason != vram.ReasonBackendUnavailable || !strings.Contains(f.Msg, "libcuda.so.1") {
		t.Fatalf("want BACKEND_UNAVAILABLE naming libcuda.so.1, got %v", err)
	}
	c, err := configure(t, `{"backend": "auto"}`)
	if err != nil || c.drv.Backend() != vram.BackendEmulated {
		t.Fatalf("auto: %v", err)
	}
}

// policyDriver's allocations claim to be something other than plain device
// memory on the device: the load must be refused and freed.
type policyDevice struct {
	gpu.Device
	info gpu.PointerInfo
}

func (d *policyDevice) Pointer(gpu.Ptr) (gpu.PointerInfo, error) { return d.info, nil }

type policyDriver struct {
	*gpu.Emulated
	dev *policyDevice
}

func (p *policyDriver) Devices() []gpu.Device { return []gpu.Device{p.dev} }

func TestPolicyViolations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.bin")
	if err := os.WriteFile(path, []byte("model bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, info := range map[string]gpu.PointerInfo{
		"managed":      {Type: gpu.MemoryDevice, Managed: true},
		"host":         {Type: gpu.MemoryHost},
		"unified":      {Type: gpu.MemoryUnified},
		"other device": {Type: gpu.MemoryDevice, Device: 3},
	} {
		em := gpu.NewEmulated(1, 1<<20)
		drv := &policyDriver{Emulated: em, dev: &policyDevice{Device: em.Devices()[0], info: info}}
		c := &Core{log: New(nil).log, drv: drv, shards: map[string]*shard{}}
		_, err := c.Load(context.Background(), openModel(t, path), "s", 0)
		var f *vram.Failure
		if !errors.As(err, &f) || f.Reason != vram.ReasonPolicyViolation || f.Violation == "" {
			t.Fatalf("%s: %v", name, err)
		}
		if free, total, _ := drv.dev.MemInfo(); free != total {
			t.Fatalf("%s: %d bytes still allocated after the refusal", name, total-free)
		}
		if _, err := c.lookup("s"); err == nil {
			t.Fatalf("%s: the refused shard is still registered", name)
		}
	}
}

// BenchmarkVerifyEmulated1GiB is the goal for this machine: an
// emulated verify (read back from "device" memory and tree-hash on every
// core) at least 1.7x the single-core SHA-256 rate of the same run.
func BenchmarkVerifyEmulated1GiB(b *testing.B) {
	const size = 1 << 30
	dir := b.TempDir()
	path := filepath.Join(dir, "model.bin")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i * 7)
	}
	for i := 0; i < size>>20; i++ {
		chunk[0] = byte(i)
		f.Write(chunk)
	}
	f.Close()
	vals, _ := Schema.Decode([]byte(`{"backend": "emulated", "emulated_device_bytes": 2147483648}`))
	c := New(nil)
	defer c.Close()
	if _, err := c.Configure(context.Background(), vals); err != nil {
		b.Fatal(err)
	}
	if _, err := c.Load(context.Background(), openModel(b, path), "bench", 0); err != nil {
		b.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	var base, ours []float64
	for b.Loop() {
		t0 := b.Elapsed()
		sha256.Sum256(data)
		t1 := b.Elapsed()
		if _, err := c.Digest(context.Background(), "bench"); err != nil {
			b.Fatal(err)
		}
		t2 := b.Elapsed()
		base = append(base, size/1e9/(t1-t0).Seconds())
		ours = append(ours, size/1e9/(t2-t1).Seconds())
	}
	bm, om := median(base), median(ours)
	b.ReportMetric(bm, "sha256-1core-GB/s")
	b.ReportMetric(om, "verify-GB/s")
	b.ReportMetric(om/bm, "ratio(goal>=1.7)")
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// copyOnlyDriver hides the emulated device's in-place view, so the read-back
// takes the path a GPU takes: copies into host buffers, hashed while the
// next one is copied.
type copyOnlyDevice struct{ gpu.Device }

type copyOnlyDriver struct {
	*gpu.Emulated
	devs []gpu.Device
}

func (d *copyOnlyDriver) Devices() []gpu.Device { return d.devs }
func (d *copyOnlyDriver) ChunkBytes() int       { return 3 * vram.LeafBytes } // many chunks

func TestCopyReadBackEqualsView(t *testing.T) {
	data := make([]byte, 40*vram.LeafBytes+777)
	for i := range data {
		data[i] = byte(i*31 + i>>9)
	}
	path := filepath.Join(t.TempDir(), "m.bin")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	em := gpu.NewEmulated(1, 16<<20)
	drv := &copyOnlyDriver{Emulated: em, devs: []gpu.Device{&copyOnlyDevice{em.Devices()[0]}}}
	c := &Core{log: New(nil).log, drv: drv, shards: map[string]*shard{}}
	if _, ok := drv.devs[0].(gpu.Viewer); ok {
		t.Fatal("the wrapper still offers a view")
	}
	if _, err := c.Load(context.Background(), openModel(t, path), "s", 0); err != nil {
		t.Fatal(err)
	}
	got, err := c.Digest(context.Background(), "s")
	if err != nil {
		t.Fatal(err)
	}
	if got != vram.TreeDigest(data, vram.LeafBytes) {
		t.Fatal("the copied read-back hashes differently")
	}
}

// With NVML, device figures are NVML's (device-wide, other processes
// included), matched by UUID, not by index.
func TestStatsPreferNVML(t *testing.T) {
	srv := dgxh100.New()
	srv.Devices[5].(*server.Device).UUID = "EMULATED-0"
	em := gpu.NewEmulated(1, 1<<20)
	c := &Core{log: New(nil).log, drv: em, shards: map[string]*shard{}, nvml: telemetry.Open(srv)}
	st, err := c.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want, _ := c.nvml.ByUUID("EMULATED-0")
	if st[0].Device.TotalBytes != want.TotalBytes || st[0].Device.Name != want.Name || st[0].Device.TotalBytes == 1<<20 {
		t.Fatalf("stats %+v, NVML says %+v", st[0], want)
	}
}

// openModel opens path as the SDK does before Load (confined, in the real
// server), closed at the end of the test.
func openModel(t testing.TB, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
