// Command loader measures the GGUF loader plugin's integrity check (run it
// with `make bench`, after `make build`): SHA-256 of a 1 GiB model file
// streamed through the plugin's Validate, against `openssl dgst -sha256` on
// the same file in the same run (goal: at least 0.95x openssl's rate). The
// file is read once first so that both measure hashing from the page cache,
// not the disk.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"

	"github.com/vramward/vramward/host/pluginhost"
	"github.com/vramward/vramward/sdk/gguftest"
	"github.com/vramward/vramward/sdk/handshake"
	"github.com/vramward/vramward/sdk/loader"
)

func main() {
	pluginBin := flag.String("plugin", "bin/vramward-plugin-loader-gguf", "the loader plugin binary")
	sizeMiB := flag.Int("size-mib", 1024, "model file size in MiB")
	runs := flag.Int("runs", 5, "measurements of each")
	flag.Parse()
	if err := run(*pluginBin, uint64(*sizeMiB)<<20, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(pluginBin string, size uint64, runs int) error {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		return fmt.Errorf("openssl is the baseline and is not installed: %w", err)
	}
	pluginBin, _ = filepath.Abs(pluginBin)
	dir, err := os.MkdirTemp("", "vramward-bench-loader-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// One F32 tensor of size bytes: a valid model whose data is the file.
	f := &gguftest.File{
		KV:      []gguftest.KV{{Key: "general.architecture", Value: gguftest.Str("bench")}},
		Tensors: []gguftest.Tensor{{Name: "w", Dims: []uint64{size / 4}, Type: gguftest.GGMLF32}},
	}
	path, err := f.Write(filepath.Join(dir, "model.gguf"))
	if err != nil {
		return err
	}
	st, _ := os.Stat(path)
	mb := float64(st.Size()) / 1e6
	if out, err := exec.Command(openssl, "dgst", "-sha256", path).CombinedOutput(); err != nil { // warm the page cache
		return fmt.Errorf("openssl: %v: %s", err, out)
	}
	want := ""
	var base []float64
	for i := 0; i < runs; i++ {
		t0 := time.Now()
		out, err := exec.Command(openssl, "dgst", "-sha256", "-r", path).Output()
		if err != nil {
			return fmt.Errorf("openssl: %w", err)
		}
		base = append(base, mb/time.Since(t0).Seconds())
		want = strings.Fields(string(out))[0]
	}

	l := &pluginhost.Launcher{Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: os.Stderr}), LogLevel: "warn"}
	proc, err := l.Launch(context.Background(), pluginhost.Spec{Name: "loader-gguf", Kind: handshake.KindModelLoader, Path: pluginBin}, loader.PluginForHost(nil))
	if err != nil {
		return err
	}
	defer plugin.CleanupClients()
	defer proc.Stop()
	c := proc.Raw.(*loader.Client)
	ctx := context.Background()
	if err := c.Configure(ctx, []byte(`{"allowed_roots": ["`+dir+`"]}`)); err != nil {
		return err
	}
	var ours []float64
	for i := 0; i < runs; i++ {
		t0 := time.Now()
		m, err := c.Validate(ctx, path, want)
		if err != nil {
			return err
		}
		ours = append(ours, mb/time.Since(t0).Seconds())
		if m.SHA256 != want {
			return fmt.Errorf("digest %s, openssl says %s", m.SHA256, want)
		}
	}
	b, o := median(base), median(ours)
	verdict := "met"
	if o/b < 0.95 {
		verdict = "NOT met"
	}
	fmt.Printf("SHA-256 of a %.0f MiB GGUF file from the page cache, median of %d runs\n", float64(st.Size())/(1<<20), runs)
	fmt.Printf("  openssl dgst -sha256 (baseline)               %7.0f MB/s\n", b)
	fmt.Printf("  loader plugin Validate (hash + GGUF + gRPC)   %7.0f MB/s  ratio %.2f  goal >=0.95: %s\n", o, o/b, verdict)
	return nil
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}
