package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/vramward/vramward/plugins/loader-gguf/internal/ggufloader"
	"github.com/vramward/vramward/sdk/gguftest"
	"github.com/vramward/vramward/sdk/handshake"
	"github.com/vramward/vramward/sdk/loader"
	"github.com/vramward/vramward/sdk/loadertest"
	"github.com/vramward/vramward/sdk/plugintest"
)

var binary string

func TestMain(m *testing.M) {
	plugintest.Main(m, func(dir string) (err error) {
		binary, err = plugintest.Build(dir, ".", "vramward-plugin-loader-gguf")
		return err
	})
}

func TestConformanceInProcess(t *testing.T) {
	loadertest.Run(t, func(t *testing.T) loader.Loader { return ggufloader.New(nil) })
}

func TestConformanceBinary(t *testing.T) {
	loadertest.RunBinary(t, binary)
}

func TestBinaryExists(t *testing.T) {
	if _, err := os.Stat(filepath.Clean(binary)); err != nil {
		t.Fatal(err)
	}
}

// The release build carries no fault hook.
func TestReleaseBuildHasNoFaultHook(t *testing.T) {
	out, err := exec.Command("go", "tool", "nm", binary).Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "main.crashing") {
		t.Fatal("the release binary contains the test-only fault hook")
	}
}

// TestMemoryBoundedByHeldMetadata: a file with 250 MB of metadata keys (each
// a valid 64,000-byte key) is read by the plugin process in under 64 MiB of
// resident memory: keys past what the summary holds are checked and
// counted, not kept.
func TestMemoryBoundedByHeldMetadata(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 250 MB file")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.gguf")
	f := &gguftest.File{KV: []gguftest.KV{{Key: "general.architecture", Value: gguftest.Str("llama")}}}
	body := strings.Repeat("k", 64000)
	for i := 0; len(f.KV)*64000 < 250<<20; i++ {
		f.KV = append(f.KV, gguftest.KV{Key: fmt.Sprintf("pad.%s_%d", body, i), Value: gguftest.U8(1)})
	}
	if _, err := f.Write(path); err != nil {
		t.Fatal(err)
	}
	raw, c := plugintest.Binary(t, binary, handshake.KindModelLoader, loader.PluginForHost(hclog.NewNullLogger()))
	client := raw.(*loader.Client)
	ctx := plugintest.Context(t)
	if err := client.Configure(ctx, []byte(fmt.Sprintf(`{"allowed_roots": [%q]}`, dir))); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	in, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(h, in); err != nil {
		t.Fatal(err)
	}
	in.Close()
	m, err := client.Validate(ctx, path, hex.EncodeToString(h.Sum(nil)))
	if err != nil {
		t.Fatal(err)
	}
	if m.Summary.KVCount != uint64(len(f.KV)) || m.Summary.ArchitectureName() != "llama" {
		t.Fatalf("summary: %d pairs, architecture %q", m.Summary.KVCount, m.Summary.ArchitectureName())
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.ReattachConfig().Pid))
	if err != nil {
		t.Fatal(err)
	}
	var hwm int64
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			hwm, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	t.Logf("%d metadata pairs, %d MB of keys: the plugin's peak resident memory was %d MiB", len(f.KV), len(f.KV)*64000>>20, hwm>>10)
	if hwm == 0 || hwm > 64<<10 {
		t.Fatalf("the plugin's peak resident memory was %d KiB; the bound is 64 MiB", hwm)
	}
}
