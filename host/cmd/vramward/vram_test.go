package main

import (
	"crypto/sha256"
	"encoding/hex"
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
	if kind, _ := crashed.Field("kind"); kind.String() != "vram_backend" {
		t.Errorf("kind %q", kind.String())
	}
	if p, _ := crashed.Field("pid"); int(p.Uint()) != pid {
		t.Errorf("crashed pid %d, killed %d", p.Uint(), pid)
	}
}

// modelConfig declares the loader and the (tamper-build) VRAM backend, one
// model m at models/m.gguf with its digest, and a one-second verify.
func modelConfig(sum, vramConfig, modelExtra string) string {
	return loaderConfig() + fmt.Sprintf(`
plugin "vram" {
  kind = "vram_backend"
  path = %q
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
`, vramBin, vramConfig, sum, modelExtra)
}

// TestVramStageRefusesASwappedPath: after the loader checked the model,
// the file is replaced by a symlink to a file outside the allowed roots,
// and the VRAM backend is killed, so the host loads the model again. The
// VRAM stage opens it through the same confinement as the loader: it is
// refused, PathTraversalAttempt (CRITICAL) is recorded, and nothing of the
// outside file (its digest) appears in the trail.
func TestVramStageRefusesASwappedPath(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "models", "m.gguf")
	sum := writeModel(t, gguftest.Small(), model)
	writeConfig(t, dir, modelConfig(sum, `backend = "emulated"`, ""))
	secret := filepath.Join(dir, "outside-secret")
	must(t, os.WriteFile(secret, []byte("chain key material, say"), 0o600))
	h := startHost(t, dir)
	h.waitStarted()
	trail := filepath.Join(dir, "trail", "audit.log")
	var pid int
	waitFor(t, func() bool {
		sealed := false
		for _, e := range trailEvents(t, trail) {
			if k, _ := e.Field("kind"); e.Type == audit.PluginStarted && k.String() == "vram_backend" {
				p, _ := e.Field("pid")
				pid = int(p.Uint())
			}
			sealed = sealed || e.Type == audit.VramSealed
		}
		return pid != 0 && sealed
	})
	must(t, os.Remove(model))
	must(t, os.Symlink(secret, model))
	must(t, syscall.Kill(pid, syscall.SIGKILL))
	var refused audit.Event
	waitFor(t, func() bool {
		for _, e := range trailEvents(t, trail) {
			if e.Type == audit.PathTraversalAttempt {
				refused = e
				return true
			}
		}
		return false
	})
	if refused.Severity != audit.Critical {
		t.Errorf("PathTraversalAttempt is %s", refused.Severity)
	}
	if p, _ := refused.Field("attempted_path"); !strings.HasSuffix(p.String(), "models/m.gguf") {
		t.Errorf("attempted_path %q", p.String())
	}
	if r, _ := refused.Field("allowed_roots"); !strings.Contains(r.String(), filepath.Join(dir, "models")) {
		t.Errorf("allowed_roots %q", r.String())
	}
	h.signal(syscall.SIGTERM)
	h.wait()
	raw, err := os.ReadFile(trail)
	must(t, err)
	secretSum := sha256.Sum256([]byte("chain key material, say"))
	if strings.Contains(string(raw), hex.EncodeToString(secretSum[:])) {
		t.Error("the trail holds the outside file's SHA-256")
	}
	sealed := 0
	for _, e := range trailEvents(t, trail) {
		if e.Type == audit.VramSealed {
			sealed++
		}
	}
	if sealed != 1 {
		t.Errorf("%d VramSealed: the swapped path was sealed", sealed)
	}
}
