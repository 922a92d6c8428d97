// Command vram measures sealing and verifying shards through the vram-cuda
// plugin process, with the references of the same run beside it: the
// device-to-host copy bandwidth (through the same gpu driver, in this
// process) and the all-core SHA-256 rate of the tree digest. The goal on a
// GPU machine: verify throughput at least 0.8x min(device-to-host, all-core
// SHA-256). Run it with `make bench` (emulated, 1 GiB) or, on a GPU node,
// `bin/bench-vram -backend cuda -sizes-gib 1,8` (see `make bench-gpu`).
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"

	"github.com/vramward/vramward/host/pluginhost"
	"github.com/vramward/vramward/plugins/vram-cuda/gpu"
	"github.com/vramward/vramward/sdk/handshake"
	"github.com/vramward/vramward/sdk/vram"
)

func main() {
	pluginBin := flag.String("plugin", "bin/vramward-plugin-vram-cuda", "the vram-cuda plugin binary")
	backend := flag.String("backend", "emulated", "cuda, emulated or auto")
	sizes := flag.String("sizes-gib", "1", "shard sizes in GiB, comma-separated")
	runs := flag.Int("runs", 5, "verifications of each shard (the median is reported)")
	dir := flag.String("dir", "bin/bench-tmp", "scratch directory for the model files")
	flag.Parse()
	if err := run(*pluginBin, *backend, *sizes, *runs, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(pluginBin, backend, sizes string, runs int, dir string) error {
	pluginBin, _ = filepath.Abs(pluginBin)
	// The backend opens models only beneath absolute allowed roots.
	dir, _ = filepath.Abs(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	work, err := os.MkdirTemp(dir, "vram-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	l := &pluginhost.Launcher{Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: os.Stderr}), LogLevel: "warn"}
	proc, err := l.Launch(context.Background(), pluginhost.Spec{Name: "vram-cuda", Kind: handshake.KindVramBackend, Path: pluginBin}, vram.PluginForHost(nil))
	if err != nil {
		return err
	}
	defer plugin.CleanupClients()
	defer proc.Stop()
	c := proc.Raw.(*vram.Client)
	ctx := context.Background()
	var maxGiB uint64
	for _, s := range strings.Split(sizes, ",") {
		g, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return fmt.Errorf("-sizes-gib: %w", err)
		}
		maxGiB = max(maxGiB, g)
	}
	cfg := fmt.Sprintf(`{"backend": %q, "emulated_device_bytes": %d}`, backend, (maxGiB+1)<<30)
	used, err := c.Configure(ctx, []byte(cfg), vram.Models{AllowedRoots: []string{work}})
	if err != nil {
		return err
	}
	devs, err := c.Devices(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("vram-cuda plugin, backend %s, device 0: %s (%s)\n", used, devs[0].Name, devs[0].UUID)
	if used == vram.BackendEmulated {
		fmt.Println("  EMULATED: host memory; these figures say nothing about a GPU")
	}
	for _, s := range strings.Split(sizes, ",") {
		g, _ := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
		if err := one(ctx, c, used, work, g<<30, runs); err != nil {
			return err
		}
	}
	return nil
}

func one(ctx context.Context, c *vram.Client, backend, dir string, size uint64, runs int) error {
	path := filepath.Join(dir, fmt.Sprintf("shard-%d.bin", size>>30))
	sum, err := writeFile(path, size)
	if err != nil {
		return err
	}
	gb := float64(size) / 1e9
	t0 := time.Now()
	l, err := c.LoadAndSeal(ctx, path, hex.EncodeToString(sum[:]), fmt.Sprintf("bench-%d", size>>30), 0)
	if err != nil {
		return err
	}
	seal := gb / time.Since(t0).Seconds()
	os.Remove(path)
	var verify []float64
	for i := 0; i < runs; i++ {
		v, err := c.Verify(ctx, l.Shard)
		if err != nil || v.Result != vram.VerifyOK {
			return fmt.Errorf("verify: %v %v", err, v.Result)
		}
		verify = append(verify, gb/v.Duration.Seconds())
	}
	if _, _, err := c.Release(ctx, l.Shard.ShardID); err != nil {
		return err
	}
	dtoh, err := dtohBandwidth(backend, min(size, 1<<30))
	if err != nil {
		return err
	}
	hashRate := treeHashRate(min(size, 1<<30))
	ref := min(dtoh, hashRate)
	v := median(verify)
	verdict := "met"
	if v < 0.8*ref {
		verdict = "NOT met"
	}
	fmt.Printf("%d GiB shard: load+seal %.2f GB/s; verify median %.2f GB/s of %d\n", size>>30, seal, v, runs)
	fmt.Printf("  references of this run: device-to-host %.2f GB/s, all-core SHA-256 tree digest %.2f GB/s\n", dtoh, hashRate)
	fmt.Printf("  verify / min(references) = %.2f  goal >=0.8: %s\n", v/ref, verdict)
	return nil
}

// writeFile writes size pseudo-random bytes and returns their SHA-256.
func writeFile(path string, size uint64) ([32]byte, error) {
	f, err := os.Create(path)
	if err != nil {
		return [32]byte{}, err
	}
	defer f.Close()
	h := sha256.New()
	chunk := make([]byte, 8<<20)
	for i := range chunk {
		chunk[i] = byte(i*7 + i>>11)
	}
	for done, n := uint64(0), 0; done < size; done += uint64(n) {
		chunk[0], chunk[1] = byte(done>>23), byte(done>>31)
		n = int(min(uint64(len(chunk)), size-done))
		h.Write(chunk[:n])
		if _, err := f.Write(chunk[:n]); err != nil {
			return [32]byte{}, err
		}
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, f.Sync()
}

// dtohBandwidth copies n bytes from device memory through the driver the
// plugin uses, in this process: the copy the verify cannot beat.
func dtohBandwidth(backend string, n uint64) (float64, error) {
	var drv gpu.Driver
	if backend == vram.BackendCUDA {
		d, err := gpu.OpenCUDA()
		if err != nil {
			return 0, err
		}
		drv = d
	} else {
		drv = gpu.NewEmulated(1, n)
	}
	defer drv.Close()
	dev := drv.Devices()[0]
	p, err := dev.Alloc(n)
	if err != nil {
		return 0, err
	}
	defer dev.Free(p)
	buf := make([]byte, drv.ChunkBytes())
	var rates []float64
	for r := 0; r < 3; r++ {
		t0 := time.Now()
		for off := uint64(0); off < n; off += uint64(len(buf)) {
			k := min(uint64(len(buf)), n-off)
			if err := dev.CopyDtoH(buf[:k], p, off); err != nil {
				return 0, err
			}
		}
		rates = append(rates, float64(n)/1e9/time.Since(t0).Seconds())
	}
	return median(rates), nil
}

func treeHashRate(n uint64) float64 {
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(i)
	}
	var rates []float64
	for r := 0; r < 3; r++ {
		t0 := time.Now()
		vram.TreeDigest(data, vram.LeafBytes)
		rates = append(rates, float64(n)/1e9/time.Since(t0).Seconds())
	}
	return median(rates)
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}
