package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/gguftest"
)

func writeModel(t *testing.T, f *gguftest.File, path string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(path); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TestModelsCheckedAtStart: the host has the loader plugin check every
// model and records each outcome: ModelLoaded for a good file, and the
// CRITICAL or HIGH event a refusal calls for, in the durable trail.
func TestModelsCheckedAtStart(t *testing.T) {
	dir := t.TempDir()
	models, outside := filepath.Join(dir, "models"), filepath.Join(dir, "outside")
	good := writeModel(t, gguftest.Small(), filepath.Join(models, "good.gguf"))
	secret := writeModel(t, gguftest.Small(), filepath.Join(outside, "secret.gguf"))
	if err := os.Symlink(filepath.Join(outside, "secret.gguf"), filepath.Join(models, "escape.gguf")); err != nil {
		t.Fatal(err)
	}
	bad := gguftest.Small()
	bad.Tensors[0].Dims = []uint64{64, 4, 1, 1, 1}
	malformed := writeModel(t, bad, filepath.Join(models, "bad.gguf"))
	writeConfig(t, dir, loaderConfig()+fmt.Sprintf(`
model "good" {
  path   = "models/good.gguf"
  sha256 = %q
}
model "escape" {
  path   = "models/escape.gguf"
  sha256 = %q
}
model "tampered" {
  path   = "models/good.gguf"
  sha256 = %q
}
model "broken" {
  path   = "models/bad.gguf"
  sha256 = %q
}
`, good, secret, strings.Repeat("0", 64), malformed))
	h := startHost(t, dir)
	h.waitStarted()
	h.signal(syscall.SIGTERM)
	if code := h.wait(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	byType := map[audit.Type]audit.Event{}
	for _, e := range trailEvents(t, filepath.Join(dir, "trail", "audit.log")) {
		byType[e.Type] = e
	}
	field := func(e audit.Event, k string) string {
		v, ok := e.Field(k)
		if !ok {
			t.Fatalf("%s has no %s", e.Type, k)
		}
		return v.String()
	}
	loaded, ok := byType[audit.ModelLoaded]
	if !ok || field(loaded, "model_ref") != "good" || field(loaded, "sha256") != good || field(loaded, "architecture") != "llama" {
		t.Fatalf("ModelLoaded: %+v", loaded)
	}
	pt, ok := byType[audit.PathTraversalAttempt]
	if !ok || pt.Severity != audit.Critical || field(pt, "attempted_path") != filepath.Join(models, "escape.gguf") ||
		!strings.Contains(field(pt, "allowed_roots"), "models") {
		t.Fatalf("PathTraversalAttempt: %+v", pt)
	}
	iv, ok := byType[audit.IntegrityViolation]
	if !ok || iv.Severity != audit.Critical || field(iv, "actual_hash") != good || field(iv, "expected_hash") != strings.Repeat("0", 64) {
		t.Fatalf("IntegrityViolation: %+v", iv)
	}
	mm, ok := byType[audit.MalformedModelRejected]
	if !ok || mm.Severity != audit.High || field(mm, "model_ref") != "broken" || !strings.Contains(field(mm, "validation_error"), "BAD_DIMS") {
		t.Fatalf("MalformedModelRejected: %+v", mm)
	}
}

func TestGGUFInspect(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.gguf")
	writeModel(t, gguftest.Small(), good)
	bad := gguftest.Small()
	bad.Version = 1
	broken := filepath.Join(dir, "v1.gguf")
	writeModel(t, bad, broken)

	out, err := exec.Command(hostBin, "gguf", "inspect", "-plugin", loaderBin, good).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"architecture:   llama", "file type:      MOSTLY_Q8_0", "parameters:     1,088", "chat template:  present, 50 bytes", "tokenizer.ggml.tokens"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	out, err = exec.Command(hostBin, "gguf", "inspect", "-json", "-plugin", loaderBin, good).Output()
	if err != nil {
		t.Fatal(err)
	}
	var sum struct {
		TensorCount int    `json:"tensor_count"`
		FileType    string `json:"file_type"`
	}
	if err := json.Unmarshal(out, &sum); err != nil || sum.TensorCount != 4 || sum.FileType != "MOSTLY_Q8_0" {
		t.Fatalf("%v %+v\n%s", err, sum, out)
	}

	cmd := exec.Command(hostBin, "gguf", "inspect", "-json", "-plugin", loaderBin, broken)
	out, err = cmd.Output()
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Fatalf("exit %d on a v1 file (%v)", code, err)
	}
	var refusal struct {
		Error struct {
			Reason       string `json:"reason"`
			FormatReason string `json:"format_reason"`
			Offset       int64  `json:"offset"`
		} `json:"error"`
	}
	if err := json.Unmarshal(out, &refusal); err != nil {
		t.Fatal(err)
	}
	if refusal.Error.Reason != "MALFORMED_MODEL" || refusal.Error.FormatReason != "UNSUPPORTED_VERSION" || refusal.Error.Offset != 4 {
		t.Fatalf("%s", out)
	}
	if stderr := string(err.(*exec.ExitError).Stderr); !strings.Contains(stderr, "version 1") {
		t.Fatalf("stderr %q does not say why", stderr)
	}
}

// TestModelThatCrashesTheLoader: a file that kills the loader's process
// (here a test build that exits on it, as a parser bug would) is recorded
// as a crash each time, retried a bounded number of times, and refused;
// the host starts, and the next model is checked by a fresh loader.
func TestModelThatCrashesTheLoader(t *testing.T) {
	dir := t.TempDir()
	models := filepath.Join(dir, "models")
	bad := writeModel(t, gguftest.Small(), filepath.Join(models, "crash-me.gguf"))
	good := writeModel(t, gguftest.Small(), filepath.Join(models, "good.gguf"))
	writeConfig(t, dir, loaderConfigFor(faultyLoaderBin)+fmt.Sprintf(`
model "crash" {
  path   = "models/crash-me.gguf"
  sha256 = %q
}
model "good" {
  path   = "models/good.gguf"
  sha256 = %q
}
`, bad, good))
	h := startHost(t, dir)
	h.waitStarted()
	h.signal(syscall.SIGTERM)
	if code := h.wait(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	crashes, loaded := 0, []string{}
	for _, e := range trailEvents(t, filepath.Join(dir, "trail", "audit.log")) {
		switch e.Type {
		case audit.PluginCrashed:
			crashes++
			if r, _ := e.Field("exit_reason"); !strings.Contains(r.String(), "exit status 3") {
				t.Errorf("exit_reason %q", r.String())
			}
			if k, _ := e.Field("kind"); k.String() != "model_loader" {
				t.Errorf("kind %q", k.String())
			}
		case audit.ModelLoaded:
			ref, _ := e.Field("model_ref")
			loaded = append(loaded, ref.String())
		}
	}
	if crashes != 3 {
		t.Fatalf("%d PluginCrashed records, want 3 (the first try and two restarts)", crashes)
	}
	if len(loaded) != 1 || loaded[0] != "good" {
		t.Fatalf("models loaded: %v", loaded)
	}
}

// loaderConfig declares the GGUF loader plugin and a loader block whose
// allowed root is the config directory's models/.
func loaderConfig() string { return loaderConfigFor(loaderBin) }

// loaderConfigFor is loaderConfig with another build of the loader.
func loaderConfigFor(bin string) string {
	return fmt.Sprintf(`
plugin "loader-gguf" {
  kind = "model_loader"
  path = %q
}
loader {
  plugin = "loader-gguf"
  config {
    allowed_roots = [abspath("models")]
  }
}
`, bin)
}

// TestSIGTERMDuringStartStopsBetweenModels: 200 models to check; a SIGTERM
// right after the first is checked stops the start between two models:
// the host shuts down through its one path (exit 0, HostStopped last, the
// trail verifies) without checking the rest. Before, it checked and sealed
// every model first.
func TestSIGTERMDuringStartStopsBetweenModels(t *testing.T) {
	dir := t.TempDir()
	const n = 200
	sum := writeModel(t, gguftest.Small(), filepath.Join(dir, "models", "m.gguf"))
	var blocks strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&blocks, "model \"m%d\" {\n  path   = \"models/m.gguf\"\n  sha256 = %q\n}\n", i, sum)
	}
	writeConfig(t, dir, loaderConfig()+blocks.String())
	cmd := exec.Command(hostBin, "run", "-config", filepath.Join(dir, "vramward.hcl"))
	stderr, err := cmd.StderrPipe()
	must(t, err)
	must(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	buf := make([]byte, 64<<10)
	var logs strings.Builder
	for !strings.Contains(logs.String(), `"model checked"`) {
		k, err := stderr.Read(buf)
		logs.Write(buf[:k])
		if err != nil {
			t.Fatalf("the host ended before checking a model:\n%s", logs.String())
		}
	}
	must(t, cmd.Process.Signal(syscall.SIGTERM))
	rest := make(chan string)
	go func() { b, _ := io.ReadAll(stderr); rest <- string(b) }()
	logs.WriteString(<-rest)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run after SIGTERM during start: %v\n%s", err, logs.String())
	}
	events := trailEvents(t, filepath.Join(dir, "trail", "audit.log"))
	loaded := 0
	for _, e := range events {
		if e.Type == audit.ModelLoaded {
			loaded++
		}
	}
	if loaded == 0 || loaded >= n {
		t.Fatalf("%d of %d models checked after a SIGTERM during the start", loaded, n)
	}
	if last := events[len(events)-1]; last.Type != audit.HostStopped {
		var types []audit.Type
		for _, e := range events[max(len(events)-5, 0):] {
			types = append(types, e.Type)
		}
		t.Fatalf("the trail ends with %v\n%s", types, logs.String())
	}
	verifyCLI(t, dir, filepath.Join(dir, "trail", "audit.log"))
}
