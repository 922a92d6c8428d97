package main

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vramward/vramward/sdk/gguftest"
)

// TestStateWriteFailureMakesTheHostDegraded: every fdatasync of the running
// host fails with EIO (strace attached to the host's threads, as a failing disk
// under state_dir would). The host says so: /readyz 503 naming the state,
// `status` DEGRADED; once the disk is back (strace detached) it serves
// again, and the trail of the whole run verifies.
func TestStateWriteFailureMakesTheHostDegraded(t *testing.T) {
	stracePath, err := exec.LookPath("strace")
	if err != nil {
		if os.Getenv("VRAMWARD_CI") != "" {
			t.Fatal("strace is not installed (.ci/run installs it)")
		}
		t.Skip("needs strace to inject EIO into the host's fdatasync")
	}
	dir := t.TempDir()
	sum := writeModel(t, gguftest.Small(), filepath.Join(dir, "models", "m.gguf"))
	cfg := writeConfig(t, dir, modelConfig(sum, `backend = "emulated"
    emulated_device_bytes = 16777216`, `shard_id = "m:0"`))
	replaceInFile(t, cfg, "audit {\n", "audit {\n  checkpoint_interval = \"200ms\"\n")
	h := startHost(t, dir)
	addr := h.waitStarted()
	ready := func() (int, string) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor(t, func() bool { code, _ := ready(); return code == 200 })

	tr := exec.Command(stracePath, "-q", "-f", "-p", strconv.Itoa(h.cmd.Process.Pid), "-e", "trace=fdatasync", "-e", "inject=fdatasync:error=EIO", "-o", filepath.Join(dir, "strace.out"))
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	detached := false
	detach := func() {
		if !detached {
			detached = true
			_ = tr.Process.Signal(syscall.SIGTERM) // strace detaches and exits
			_ = tr.Wait()
		}
	}
	t.Cleanup(detach)
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := ready()
		if code == 503 && strings.Contains(body, "state cannot be written") {
			break
		}
		if time.Now().After(deadline) {
			st, _ := os.ReadFile(filepath.Join(dir, "strace.out"))
			t.Fatalf("not degraded with fdatasync failing: /readyz %d %s\nstrace: %s", code, body, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, _ := exec.Command(hostBin, "status", "-config", cfg).CombinedOutput()
	if !strings.Contains(string(out), "DEGRADED") || !strings.Contains(string(out), "state cannot be written") {
		t.Fatalf("status with the state's fdatasync failing:\n%s", out)
	}
	detach()
	waitFor(t, func() bool { code, _ := ready(); return code == 200 })
	time.Sleep(500 * time.Millisecond) // a few more checkpoints, on a healthy disk
	h.signal(syscall.SIGTERM)
	if code := h.wait(); code != 0 {
		t.Fatalf("exit code %d after the disk came back", code)
	}
	verifyCLI(t, dir, filepath.Join(dir, "trail", "audit.log"))
}
