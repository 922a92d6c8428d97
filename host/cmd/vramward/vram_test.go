package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/gguftest"
)

// TestSealVerifyLoopCatchesTampering: the host loads and seals a model on
// the emulated backend, keeps verifying it, and when one resident byte is
// changed records SealVerificationFailed (CRITICAL), releases the shard
// (verify.on_failure = "release") and records that too; the trail verifies.
func TestSealVerifyLoopCatchesTampering(t *testing.T) {
	dir := t.TempDir()
	sum := writeModel(t, gguftest.Small(), filepath.Join(dir, "models", "m.gguf"))
	ctl := filepath.Join(dir, "tamper")
	t.Setenv("VRAMWARD_TAMPER_FILE", ctl) // inherited by the host, then by its plugins
	writeConfig(t, dir, modelConfig(sum, `backend = "emulated"
    emulated_device_bytes = 16777216`, `shard_id = "m:0"`))
	h := startHost(t, dir)
	h.waitStarted()
	trail := filepath.Join(dir, "trail", "audit.log")
	has := func(typ audit.Type) bool {
		for _, e := range trailEvents(t, trail) {
			if e.Type == typ {
				return true
			}
		}
		return false
	}
	waitFor(t, func() bool { return has(audit.SealVerified) })
	if err := os.WriteFile(ctl, []byte("m:0 100"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return has(audit.VramDeallocated) })
	h.signal(syscall.SIGTERM)
	if code := h.wait(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	var types []string
	var failed audit.Event
	for _, e := range trailEvents(t, trail) {
		types = append(types, string(e.Type))
		if e.Type == audit.SealVerificationFailed {
			failed = e
		}
	}
	joined := strings.Join(types, " ")
	for _, want := range []string{"VramAllocated VramSealed", "SealVerified", "SealVerificationFailed VramDeallocated"} {
		if !strings.Contains(joined, want) {
			t.Fatalf("trail lacks %q: %s", want, joined)
		}
	}
	if failed.Severity != audit.Critical {
		t.Fatalf("SealVerificationFailed is %s", failed.Severity)
	}
	for k, want := range map[string]string{"shard_id": "m:0", "reason": "DIGEST_MISMATCH", "action_taken": "shard_released"} {
		if v, _ := failed.Field(k); v.String() != want {
			t.Errorf("%s = %q, want %q", k, v.String(), want)
		}
	}
	if v, _ := failed.Field("actual_digest"); v.String() == "" {
		t.Error("no actual digest recorded")
	}
	if out := verifyCLI(t, dir, trail); !strings.HasPrefix(out, "OK: ") {
		t.Fatalf("verify: %s", out)
	}
}

// TestVramBackendCrashReloadsTheModels: the backend process is killed; the
// host records PluginCrashed, restarts it, loads and seals the model again,
// and goes on verifying.
func TestVramBackendCrashReloadsTheModels(t *testing.T) {
	dir := t.TempDir()
	sum := writeModel(t, gguftest.Small(), filepath.Join(dir, "models", "m.gguf"))
	writeConfig(t, dir, modelConfig(sum, `backend = "emulated"`, ""))
	h := startHost(t, dir)
	h.waitStarted()
	trail := filepath.Join(dir, "trail", "audit.log")
	count := func(typ audit.Type) (n int, last audit.Event) {
		for _, e := range trailEvents(t, trail) {
			if e.Type == typ {
				n, last = n+1, e
			}
		}
		return n, last
	}
	var pid int
	waitFor(t, func() bool {
		for _, e := range trailEvents(t, trail) {
			if k, _ := e.Field("kind"); e.Type == audit.PluginStarted && k.String() == "vram_backend" {
				p, _ := e.Field("pid")
				pid = int(p.Uint())
			}
		}
		n, _ := count(audit.VramSealed)
		return pid != 0 && n == 1
	})
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { n, _ := count(audit.VramSealed); return n == 2 })
	sealedAgain := len(trailEvents(t, trail))
	waitFor(t, func() bool {
		for _, e := range trailEvents(t, trail)[sealedAgain:] {
			if e.Type == audit.SealVerified {
				return true
			}
		}
		return false
	})
	h.signal(syscall.SIGTERM)
	if code := h.wait(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	n, crashed := count(audit.PluginCrashed)
	if n != 1 || crashed.Severity != audit.High {
		t.Fatalf("%d PluginCrashed, last %+v", n, crashed)
	}
	if reason, _ := crashed.Field("exit_reason"); !strings.Contains(reason.String(), "killed") {
		t.Errorf("exit_reason %q", reason.String())
	}
	if p, _ := crashed.Field("pid"); int(p.Uint()) != pid {
		t.Errorf("crashed pid %d, killed %d", p.Uint(), pid)
	}
}

// modelConfig declares the loader and the (tamper-build) VRAM backend, one
// model m at models/m.gguf with its digest, and a one-second verify.
func modelConfig(sum, vramConfig, modelExtra string) string {
	return fmt.Sprintf(`
plugin "loader-gguf" {
  kind = "model_loader"
  path = %q
}
plugin "vram" {
  kind = "vram_backend"
  path = %q
}
loader {
  plugin = "loader-gguf"
  config {
    allowed_roots = [abspath("models")]
  }
}
vram {
  plugin = "vram"
  config {
    %s
  }
}
model "m" {
  path   = "models/m.gguf"
  sha256 = %q
  %s
}
verify {
  interval = "1s"
}
`, loaderBin, vramBin, vramConfig, sum, modelExtra)
}
