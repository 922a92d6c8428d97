package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestPowerCutAfterTheTrailKeptACheckpoint: a power cut after the file
// sink's fsync of the last run's checkpoints and before the state's
// fdatasync, emulated: the state slots are put back to what they held
// just after that run started, once it has stopped. The next start finds
// the state behind the trail, rolls the log forward over the trail to its
// last checkpoint, and the trail verifies with the crash's loss accepted.
// Before, that start continued from the older state and verify called its
// recovery forged.
func TestPowerCutAfterTheTrailKeptACheckpoint(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, "")
	state := filepath.Join(dir, "state")
	h := startHost(t, dir)
	h.waitStarted()
	kept := map[string][]byte{}
	for _, slot := range []string{"chain.state.a", "chain.state.b"} {
		data, err := os.ReadFile(filepath.Join(state, slot))
		must(t, err)
		kept[slot] = data
	}
	h.signal(syscall.SIGTERM)
	if code := h.wait(); code != 0 {
		t.Fatalf("first run: exit %d", code)
	}
	for slot, data := range kept {
		must(t, os.WriteFile(filepath.Join(state, slot), data, 0o600))
	}

	h = startHost(t, dir)
	h.waitStarted()
	h.signal(syscall.SIGTERM)
	if code := h.wait(); code != 0 {
		t.Fatalf("run after the cut: exit %d", code)
	}
	trailPath := filepath.Join(dir, "trail", "audit.log")
	pub := filepath.Join(state, "audit.pub")
	code, out := verifyRun(t, "-key", pub, trailPath)
	if code != 1 || strings.Contains(out, "forged") || !strings.Contains(out, "-accept-loss") {
		t.Fatalf("verify after the cut: exit %d:\n%s", code, out)
	}
	if code, out := verifyRun(t, append([]string{"-key", pub}, append(lossArgs(out), trailPath)...)...); code != 0 {
		t.Fatalf("verify with the crash's loss accepted: exit %d:\n%s", code, out)
	}
	h.mu.Lock()
	rolled := false
	for _, entry := range h.logs {
		if msg, _ := entry["@message"].(string); strings.Contains(msg, "behind a sink's trail") {
			rolled = true
		}
	}
	h.mu.Unlock()
	if !rolled {
		t.Fatalf("the start after the cut did not roll forward:\n%v", h.logs)
	}
}
