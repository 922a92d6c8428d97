package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vramward/vramward/host/trail"
	"github.com/vramward/vramward/sdk/plugintest"
)

// Copies, spools and proofs of a trail through the real host and CLI.

// TestKill9WithSpooledBacklogVerifies: a second sink is down, so its
// events wait in its spool; the host is killed with SIGKILL; the next
// start (the sink works again) records AuditRecovered, replays the spool
// first, in seq order, and both sinks' trails verify untampered, and
// agree seq by seq.
func TestKill9WithSpooledBacklogVerifies(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, brokenSinkPlugin)
	replaceInFile(t, cfg, "audit {\n", `audit {
  require    = "any"
  queue_size = 2
  sink "second" {
    plugin = "broken"
    config {
      path = abspath("trail2/audit.log")
    }
  }
`)
	h := startHost(t, dir)
	h.waitStarted()
	spool := filepath.Join(dir, "state", "spool-second.jsonl")
	waitFor(t, func() bool {
		data, _ := os.ReadFile(spool)
		return bytes.Count(data, []byte("\n")) >= 2
	})
	h.signal(syscall.SIGKILL)
	h.wait()
	// The second sink works at the next start.
	replaceInFile(t, cfg, `path          = "/bin/true"`, fmt.Sprintf(`path          = %q`, sinkBin))
	runOnce(t, dir, 300*time.Millisecond, syscall.SIGTERM)

	pub := filepath.Join(dir, "state", "audit.pub")
	first, second := filepath.Join(dir, "trail", "audit.log"), filepath.Join(dir, "trail2", "audit.log")
	var loss []string
	for _, p := range []string{first, second} {
		// The crash is a declared loss: it fails until accepted.
		code, out := verifyRun(t, "-key", pub, p)
		l := lossArgs(out)
		if code != 1 || len(l) != 2 {
			t.Fatalf("%s after kill -9: the loss did not fail (exit %d):\n%s", p, code, out)
		}
		code, out = verifyRun(t, append(append([]string{"-key", pub}, l...), p)...)
		if code != 0 || !strings.Contains(out, "AuditRecovered") {
			t.Fatalf("%s after kill -9 (exit %d):\n%s", p, code, out)
		}
		loss = append(loss, l...)
	}
	if code, out := verifyRun(t, append(append([]string{"-key", pub}, loss...), "-copy", second, first)...); code != 0 {
		t.Fatalf("the two sinks disagree (exit %d):\n%s", code, out)
	}
	recs := trailEvents(t, second)
	for i := 1; i < len(recs); i++ {
		if recs[i].Seq <= recs[i-1].Seq {
			t.Fatalf("the replayed spool is out of seq order at record %d", i)
		}
	}
}

// TestProveAndCheckpoint: `audit prove` makes an inclusion proof that
// `-check` verifies with the public key alone; an edited record or
// another key fails.
func TestProveAndCheckpoint(t *testing.T) {
	dir := t.TempDir()
	trailConfig(t, dir, "node-p")
	runOnce(t, dir, 200*time.Millisecond, syscall.SIGTERM)
	runOnce(t, dir, 200*time.Millisecond, syscall.SIGTERM)
	path := filepath.Join(dir, "trail", "audit.log")
	pub := filepath.Join(dir, "state", "audit.pub")
	proof, err := exec.Command(hostBin, "audit", "prove", "-key", pub, "2", path).Output()
	if err != nil {
		t.Fatalf("prove: %v", err)
	}
	pf := filepath.Join(dir, "seq2.proof")
	must(t, os.WriteFile(pf, proof, 0o600))
	out, err := exec.Command(hostBin, "audit", "prove", "-key", pub, "-check", pf).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK: seq 2") {
		t.Fatalf("check: %v\n%s", err, out)
	}
	if !bytes.HasPrefix(proof, []byte("c2sp.org/tlog-proof@v1\n")) {
		t.Fatalf("not a tlog-proof:\n%s", proof)
	}
	p, err := trail.ParseProof(proof)
	must(t, err)
	p.Record = bytes.Replace(p.Record, []byte(`"correlation_id":"`), []byte(`"correlation_id":"x`), 1)
	edited, err := p.Marshal()
	must(t, err)
	bad := filepath.Join(dir, "bad.proof")
	must(t, os.WriteFile(bad, edited, 0o600))
	if out, err := exec.Command(hostBin, "audit", "prove", "-key", pub, "-check", bad).CombinedOutput(); exitOf(err) != 1 {
		t.Fatalf("an edited record's proof checked: %v\n%s", err, out)
	}
	other, err := trail.GenerateKey(trail.Origin("node-p"))
	must(t, err)
	if out, err := exec.Command(hostBin, "audit", "prove", "-key", other.VerifierKey(), "-check", pf).CombinedOutput(); exitOf(err) != 1 {
		t.Fatalf("a proof checked with another key: %v\n%s", err, out)
	}
}

// TestExampleSinkThroughTheHost: the forty-line example sink, a module of
// its own built on the SDK alone, runs as a second sink of the host; it
// stores exactly the file sink's bytes, and the trail verifies with it as a
// copy.
func TestExampleSinkThroughTheHost(t *testing.T) {
	bin, err := plugintest.Build(t.TempDir(), "../../../examples/sink-jsonl", "sink-jsonl")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := writeConfig(t, dir, fmt.Sprintf(`
plugin "jsonl" {
  kind = "audit_sink"
  path = %q
}
`, bin))
	replaceInFile(t, cfg, "audit {\n", `audit {
  sink "example" {
    plugin = "jsonl"
    config {
      path = abspath("trail/example.jsonl")
    }
  }
`)
	runOnce(t, dir, 300*time.Millisecond, syscall.SIGTERM)
	runOnce(t, dir, 300*time.Millisecond, syscall.SIGTERM)
	file, err := os.ReadFile(filepath.Join(dir, "trail", "audit.log"))
	must(t, err)
	example, err := os.ReadFile(filepath.Join(dir, "trail", "example.jsonl"))
	must(t, err)
	if len(file) == 0 || !bytes.Equal(file, example) {
		t.Fatalf("the example sink stored other bytes than the file sink (%d and %d bytes)", len(example), len(file))
	}
	if code, out := verifyRun(t, "-key", filepath.Join(dir, "state", "audit.pub"), "-copy", filepath.Join(dir, "trail", "example.jsonl"), filepath.Join(dir, "trail", "audit.log")); code != 0 {
		t.Fatalf("verify with the example's copy (exit %d):\n%s", code, out)
	}
}
