package main

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vramward/vramward/host/status"
	"github.com/vramward/vramward/host/trail"
	"github.com/vramward/vramward/sdk/gguftest"
)

// statusOf runs `vramward status -json` and returns its exit code and view.
func statusOf(t *testing.T, dir string) (int, status.Status, string) {
	t.Helper()
	out, err := exec.Command(hostBin, "status", "-json", "-config", filepath.Join(dir, "vramward.hcl")).Output()
	var st status.Status
	if len(out) > 0 {
		if jerr := json.Unmarshal(out, &st); jerr != nil {
			t.Fatalf("status -json: %v\n%s", jerr, out)
		}
	}
	return exitOf(err), st, string(out)
}

// TestStatusShowsWhatTheHostHolds: the example model sealed and verified, a
// second model refused, a sink killed: `vramward status` shows each, exits 1
// while the sink is down and 0 once it is back; the socket is its user's
// only, and the view holds no token and no key.
func TestStatusShowsWhatTheHostHolds(t *testing.T) {
	dir := t.TempDir()
	sum := writeModel(t, gguftest.Small(), filepath.Join(dir, "models", "m.gguf"))
	writeConfig(t, dir, modelConfig(sum, `backend = "emulated"
    emulated_device_bytes = 16777216`, `shard_id = "m:0"`)+`
model "bad" {
  path   = "models/m.gguf"
  sha256 = "`+strings.Repeat("0", 64)+`"
}
`)
	h := startHost(t, dir)
	h.waitStarted()
	var st status.Status
	var code int
	waitFor(t, func() bool {
		code, st, _ = statusOf(t, dir)
		return len(st.Shards) == 1 && st.Shards[0].LastVerified != nil
	})
	if code != 0 || st.Host.State != status.Serving || st.Host.WorkerID != "e2e" {
		t.Fatalf("exit %d, host %+v", code, st.Host)
	}
	sh := st.Shards[0]
	if sh.ShardID != "m:0" || sh.Model != "m" || sh.Backend != "emulated" || len(sh.Digest) != 64 || sh.VerifyResult != "OK" {
		t.Fatalf("shard %+v", sh)
	}
	var bad *status.Model
	for i := range st.Models {
		if st.Models[i].Name == "bad" {
			bad = &st.Models[i]
		}
	}
	if bad == nil || bad.State != "refused" || !strings.Contains(bad.Reason, "INTEGRITY") {
		t.Fatalf("the refused model: %+v", st.Models)
	}
	if st.Trail.Seq == 0 || st.Trail.LastCheckpointSeq == 0 {
		t.Fatalf("trail %+v", st.Trail)
	}
	// The real file sink serves the lane the host passed it.
	if len(st.Sinks) == 0 || !st.Sinks[0].RecordLane {
		t.Fatalf("the sink's CRITICAL emits do not travel on its record lane: %+v", st.Sinks)
	}
	// What erases the epoch key's copies is what this build has (the host
	// is built as the test is).
	if st.Host.SecretErasure != trail.SecretErasure {
		t.Fatalf("secret erasure %q, this build %q", st.Host.SecretErasure, trail.SecretErasure)
	}

	// The socket is the host's user's only, and holds nothing secret.
	sock := filepath.Join(dir, "state", status.SocketName)
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v %v", fi.Mode(), err)
	}
	_, _, raw := statusOf(t, dir)
	key := stealKey(t, filepath.Join(dir, "state")).AppendSecret(nil)
	for _, secret := range []string{"0123456789abcdef0123456789abcdef", hex.EncodeToString(key), base64.StdEncoding.EncodeToString(key)} {
		if strings.Contains(raw, secret) {
			t.Fatalf("the status view holds a secret (%.8s…)", secret)
		}
	}
	if os.Getuid() == 0 {
		// The test binary's directory is root's own: another user needs
		// a copy it may run.
		pub, err := os.MkdirTemp("", "vramward-other-user-")
		must(t, err)
		t.Cleanup(func() { os.RemoveAll(pub) })
		must(t, os.Chmod(pub, 0o755))
		bin, err := os.ReadFile(hostBin)
		must(t, err)
		must(t, os.WriteFile(filepath.Join(pub, "vramward"), bin, 0o755))
		other := exec.Command(filepath.Join(pub, "vramward"), "status", "-socket", sock)
		other.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		if out, err := other.CombinedOutput(); exitOf(err) != 1 || !strings.Contains(string(out), "does not answer") {
			t.Fatalf("another user read the status (%v):\n%s", err, out)
		}
	}

	// Kill the sink's plugin: degraded (exit 1) until it is restarted.
	var sinkPID int
	for _, p := range st.Plugins {
		if p.Kind == "audit_sink" {
			sinkPID = p.PID
		}
	}
	if sinkPID == 0 {
		t.Fatalf("no sink plugin in %+v", st.Plugins)
	}
	for _, p := range st.Plugins {
		if !p.Running || len(p.RunningSHA256) != 64 || p.Protocol != 1 || (p.Kind == "audit_sink" && !p.Sandboxed) {
			t.Errorf("plugin %+v", p)
		}
	}
	if err := syscall.Kill(sinkPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	sawDown := false
	waitFor(t, func() bool {
		code, st, _ = statusOf(t, dir)
		if code == 1 && st.Host.State == status.Degraded {
			sawDown = true
		}
		return sawDown && code == 0
	})
	for _, p := range st.Plugins {
		if p.Kind == "audit_sink" && (p.Restarts < 1 || p.PID == sinkPID) {
			t.Fatalf("the sink's restart is not shown: %+v", p)
		}
	}
	h.signal(syscall.SIGTERM)
	if c := h.wait(); c != 0 {
		t.Fatalf("exit %d", c)
	}
	if _, err := os.Stat(sock); err == nil {
		t.Error("the status socket is left after shutdown")
	}
	if code, _, _ := statusOf(t, dir); code != 1 {
		t.Errorf("status of a stopped host exits %d", code)
	}
}
