package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vramward/vramward/host/trail"
	"github.com/vramward/vramward/sdk/audit"
)

// startWitness runs `vramward witness` on a loopback port for the node's
// public key file and returns its URL.
func startWitness(t *testing.T, dir, pub string) string {
	t.Helper()
	cmd := exec.Command(hostBin, "witness", "-key-file", filepath.Join(dir, "witness.key"), "-state", filepath.Join(dir, "witness-state"),
		"-log", pub, "-listen", "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	must(t, err)
	must(t, cmd.Start())
	done := make(chan struct{})
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	addr := make(chan string, 1)
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var entry map[string]any
			if json.Unmarshal(sc.Bytes(), &entry) == nil && entry["@message"] == "witness serving" {
				addr <- entry["address"].(string)
			}
		}
		_ = cmd.Wait()
	}()
	select {
	case a := <-addr:
		return "http://" + a
	case <-time.After(20 * time.Second):
		t.Fatal("the witness did not start")
	}
	return ""
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	must(t, os.MkdirAll(to, 0o700))
	entries, err := os.ReadDir(from)
	must(t, err)
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(from, e.Name()))
		must(t, err)
		must(t, os.WriteFile(filepath.Join(to, e.Name()), data, 0o600))
	}
}

func fetch(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	must(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(t, err)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return b
}

// TestWitnessedTrail runs the host with a real witness on loopback over
// several epochs and restarts, then gives root the node's whole state dir:
// a rewrite it signs with the stolen key passes the public key alone (that
// is the window), and fails against the witness, whether it keeps the
// cosignature records or drops them. A rollback of the state dir makes the
// witness refuse the host's next checkpoint, and the host records it.
func TestWitnessedTrail(t *testing.T) {
	dir := t.TempDir()
	cfg := trailConfig(t, dir, "node-w")
	pub := filepath.Join(dir, "state", "audit.pub")
	path := filepath.Join(dir, "trail", "audit.log")
	runOnce(t, dir, 100*time.Millisecond, syscall.SIGTERM) // makes the log and its keys

	out, err := exec.Command(hostBin, "witness", "-keygen", "witness.test/w1", "-key-file", filepath.Join(dir, "witness.key")).Output()
	must(t, err)
	wkey := strings.TrimSpace(string(out))
	url := startWitness(t, dir, pub)
	replaceInFile(t, cfg, "audit {\n", "audit {\n  checkpoint_interval = \"200ms\"\n  witness \"w1\" {\n    url = \""+url+"\"\n    key = \""+wkey+"\"\n  }\n")

	runOnce(t, dir, 400*time.Millisecond, syscall.SIGTERM)
	older := filepath.Join(dir, "state-older")
	copyDir(t, filepath.Join(dir, "state"), older)
	runOnce(t, dir, 400*time.Millisecond, syscall.SIGTERM)
	// The last run in one epoch, so that the key root steals signs it all.
	replaceInFile(t, cfg, "epoch_events = 5", "epoch_events = 100000")
	lastRun := len(readLines(t, path))
	h := startHost(t, dir)
	h.waitStarted()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		n := 0
		for _, l := range readLines(t, path)[lastRun:] {
			if strings.Contains(l, `"type":"AuditCheckpointCosigned"`) {
				n++
			}
		}
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint of the last run was cosigned")
		}
	}
	h.signal(syscall.SIGTERM)
	if code := h.wait(); code != 0 {
		t.Fatalf("exit %d", code)
	}

	base := []string{"-key", pub, "-witness-key", wkey}
	code, vout := verifyRun(t, append(base, path)...)
	if code != 0 || !strings.Contains(vout, "witnessed: the checkpoint of tree size") {
		t.Fatalf("the witnessed trail does not verify (exit %d):\n%s", code, vout)
	}
	if m := strings.Count(vout, "epochs 0 to "); m != 1 || strings.Contains(vout, "epochs 0 to 0,") {
		t.Fatalf("want several epochs:\n%s", vout)
	}
	latest := filepath.Join(dir, "witness-latest")
	must(t, os.WriteFile(latest, fetch(t, url+"/checkpoint?origin="+trail.Origin("node-w")), 0o600))
	if code, vout := verifyRun(t, append(append(base, "-checkpoint", latest), path)...); code != 0 {
		t.Fatalf("the trail is not consistent with the witness's latest (exit %d):\n%s", code, vout)
	}

	// An inclusion proof against the cosigned checkpoint (tlog-proof with
	// the witness's cosignature) checks with the node's and the witness's
	// public keys alone, no key certifications needed.
	proof, err := exec.Command(hostBin, "audit", "prove", "-key", pub, "-witness-key", wkey, "3", path).Output()
	must(t, err)
	pf := filepath.Join(dir, "seq3.proof")
	must(t, os.WriteFile(pf, proof, 0o600))
	if out, err := exec.Command(hostBin, "audit", "prove", "-key", pub, "-witness-key", wkey, "-check", pf).CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "cosigned by 1 of 1 witnesses") {
		t.Fatalf("the cosigned proof does not check: %v\n%s", err, out)
	}

	// Root rewrites the last run's first record with the current key.
	lines := readLines(t, path)
	target := -1
	for i := lastRun; i < len(lines); i++ {
		if parseLine(t, lines[i]).Type == audit.HostStarted {
			target = i
			break
		}
	}
	cosigned := 0
	for _, l := range lines[target:] {
		if parseLine(t, l).Type == audit.AuditCheckpointCosigned {
			cosigned++
		}
	}
	if target < 0 || cosigned == 0 {
		t.Fatalf("the last run holds no HostStarted (%d) or no cosignature (%d)", target, cosigned)
	}
	stolen := stealKey(t, filepath.Join(dir, "state"))
	rewritten := writeLines(t, filepath.Join(dir, "rewritten.log"), rewriteFrom(t, lines, target, stolen))
	if code, vout := verifyRun(t, "-key", pub, rewritten); code != 0 {
		t.Fatalf("the rewrite with the stolen current key should pass the public key alone (the window the witness closes): exit %d\n%s", code, vout)
	}
	code, vout = verifyRun(t, append(base, rewritten)...)
	if code != 1 || !strings.Contains(vout, "forged: witness w1: a cosignature by a witness key given does not verify") {
		t.Fatalf("a rewrite of cosigned history passed -witness-key (exit %d):\n%s", code, vout)
	}
	// The same with the cosignature records dropped: the witness's latest
	// checkpoint catches it.
	var dropped []string
	for i, l := range rewriteFrom(t, lines, target, stolen) {
		if i < target || parseLine(t, l).Type != audit.AuditCheckpointCosigned {
			dropped = append(dropped, l)
		}
	}
	// Dropping records breaks seqs: relink them as root would.
	dropped = relink(t, dropped, target, stolen)
	droppedFile := writeLines(t, filepath.Join(dir, "dropped.log"), dropped)
	code, vout = verifyRun(t, append(append(base, "-checkpoint", latest), droppedFile)...)
	if code != 1 || !strings.Contains(vout, "witness-latest") {
		t.Fatalf("a rewrite without its cosignature records passed against the witness's checkpoint (exit %d):\n%s", code, vout)
	}

	// Roll the state dir back: the witness refuses the host's checkpoints,
	// and the host records that as CRITICAL.
	must(t, os.RemoveAll(filepath.Join(dir, "state")))
	copyDir(t, older, filepath.Join(dir, "state"))
	runOnce(t, dir, 800*time.Millisecond, syscall.SIGTERM)
	var refused *audit.Event
	for _, l := range readLines(t, path) {
		if e := parseLine(t, l); e.Type == audit.AuditCheckpointRefused {
			refused = &e
		}
	}
	if refused == nil {
		t.Fatal("the witness's refusal of a rolled-back log was not recorded")
	}
	if st, _ := refused.Field("status"); st.Uint() != 409 || refused.Severity != audit.Critical {
		t.Fatalf("refusal recorded as %v (status %v)", refused.Severity, st)
	}
}

// relink renumbers records from index from on so that seqs run on without
// a gap, rehashing and re-signing as rewriteFrom does.
func relink(t *testing.T, lines []string, from int, key *trail.PrivateKey) []string {
	t.Helper()
	seq := parseLine(t, lines[from-1]).Seq
	out := append([]string(nil), lines...)
	for i := from; i < len(out); i++ {
		e := parseLine(t, out[i])
		if e.Type == audit.AuditRecovered {
			break
		}
		seq++
		e.Seq = seq
		out[i] = string(e.AppendJSON(nil))
	}
	return rewriteFrom(t, out, from, key)
}
