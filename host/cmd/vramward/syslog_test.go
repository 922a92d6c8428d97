package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audittest"
	"github.com/vramward/vramward/sdk/audittest/rsyslogd"
	"github.com/vramward/vramward/sdk/gguftest"
)

// TestSyslogReceiverLateGetsEveryRecord: the host runs with a file sink and
// a syslog sink whose receiver is down at start. The file gets everything
// at once and records the syslog sink's failure; once the receiver is up,
// the host delivers every record to it too, so at shutdown both copies hold
// the same records, byte for byte.
func TestSyslogReceiverLateGetsEveryRecord(t *testing.T) {
	srv := rsyslogd.Start(t, rsyslogd.TCP)
	srv.Stop(t)
	dir := t.TempDir()
	cfg := configHead(t, dir) + fmt.Sprintf(`
plugin "audit-syslog" {
  kind    = "audit_sink"
  path    = %q
  network = true
}
audit {
  require = "any"
  sink "local" {
    plugin = "audit-file"
    config {
      path = abspath("trail/audit.log")
    }
  }
  sink "siem" {
    plugin = "audit-syslog"
    config {
      transport      = "tcp"
      address        = %q
      flush_interval = "100ms"
    }
  }
}
`, syslogBin, srv.Addr())
	if err := os.WriteFile(filepath.Join(dir, "vramward.hcl"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	h := startHost(t, dir)
	h.waitStarted()
	trail := filepath.Join(dir, "trail", "audit.log")
	waitFor(t, func() bool {
		for _, e := range trailEvents(t, trail) {
			if e.Type == audit.AuditSinkFailed {
				return true
			}
		}
		return false
	})
	srv.Restart(t)
	waitFor(t, func() bool {
		for _, e := range trailEvents(t, trail) {
			if e.Type == audit.AuditSinkRecovered {
				return true
			}
		}
		return false
	})
	h.signal(syscall.SIGTERM)
	if code := h.wait(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	file := audittest.ReadJSONLines(t, trail)
	lines := srv.WaitLines(t, len(file), 10*time.Second)
	if len(lines) != len(file) {
		t.Fatalf("syslog received %d records, the file holds %d", len(lines), len(file))
	}
	for i, l := range lines {
		_, msg, ok := strings.Cut(l, "] \xef\xbb\xbf")
		if !ok || msg != string(file[i].AppendJSON(nil)) {
			t.Fatalf("syslog record %d differs from the file's:\n%s\n%s", i, msg, file[i].AppendJSON(nil))
		}
	}
	if file[len(file)-2].Type != audit.HostStopped || file[len(file)-1].Type != audit.AuditCheckpoint {
		t.Fatalf("last records %s, %s", file[len(file)-2].Type, file[len(file)-1].Type)
	}
	// The receiver's copy verifies with the public key, as it is.
	copyPath := filepath.Join(dir, "syslog-copy.log")
	if err := os.WriteFile(copyPath, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := verifyCLI(t, dir, copyPath); !strings.HasPrefix(out, fmt.Sprintf("OK: %d records", len(file))) {
		t.Fatalf("verify of the syslog copy: %s", out)
	}
	// Compared with the copy, the trail checks out; cut its tail and the
	// copy shows it.
	if out := verifyCLI(t, dir, "-copy", copyPath, trail); !strings.Contains(out, "copy "+copyPath+": OK") || strings.Contains(out, "FAILED") {
		t.Fatalf("verify with -copy: %s", out)
	}
	// RELP re-sends what was unacknowledged after a stall: the receiver's
	// file holds those records twice, byte for byte. The copy still
	// verifies, with a note; a re-sent record that differs does not.
	resent := append(append(append([]string(nil), lines[:6]...), lines[3:6]...), lines[6:]...)
	if err := os.WriteFile(copyPath, []byte(strings.Join(resent, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := verifyCLI(t, dir, "-copy", copyPath, trail); !strings.Contains(out, "copy "+copyPath+": OK") || !strings.Contains(out, "byte-identical re-sends") {
		t.Fatalf("verify with -copy of a copy holding re-sends: %s", out)
	}
	resent[6] = strings.Replace(resent[6], "{", "{ ", 1)
	if err := os.WriteFile(copyPath, []byte(strings.Join(resent, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(hostBin, "audit", "verify", "-key", filepath.Join(dir, "state", "audit.pub"), "-copy", copyPath, trail).CombinedOutput(); err == nil {
		t.Fatalf("a copy whose re-sent record differs passed:\n%s", out)
	}
	if err := os.WriteFile(copyPath, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(trail)
	if err != nil {
		t.Fatal(err)
	}
	recs := strings.SplitAfter(string(b), "\n")
	cut := filepath.Join(dir, "cut.log")
	if err := os.WriteFile(cut, []byte(strings.Join(recs[:len(recs)-3], "")), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(hostBin, "audit", "verify", "-key", filepath.Join(dir, "state", "audit.pub"), "-live", "-copy", copyPath, cut).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "the copy holds this record and the trail lacks it") {
		t.Fatalf("a cut trail passed against its copy (%v):\n%s", err, out)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// receivedSeqs parses the records a receiver got and counts each seq.
func receivedSeqs(t *testing.T, lines []string) map[uint64]int {
	t.Helper()
	seqs := map[uint64]int{}
	for _, l := range lines {
		_, msg, ok := strings.Cut(l, "] \xef\xbb\xbf")
		if !ok {
			t.Fatalf("not a vramward record: %q", l)
		}
		e, err := audit.ParseJSON([]byte(msg))
		if err != nil {
			t.Fatalf("record %q: %v", msg, err)
		}
		seqs[e.Seq]++
	}
	return seqs
}

// TestSyslogOutageWithHostRestart stops the syslog receiver for 10 s while
// events flow, and restarts the host in the middle of the outage. When the
// receiver is back, delivery resumes within 2 s, and at the end it holds
// every seq of the trail exactly once: nothing the old sink had delivered
// is sent again by the new one, and nothing is missing. Over RELP, the
// transport whose receiver acknowledges each message: over plain TCP a
// message written just as the receiver stops can be lost (the sink's README
// says so), which no sender can prevent.
func TestSyslogOutageWithHostRestart(t *testing.T) {
	srv := rsyslogd.Start(t, rsyslogd.RELP)
	dir := t.TempDir()
	sum := writeModel(t, gguftest.Small(), filepath.Join(dir, "models", "m.gguf"))
	cfg := writeConfig(t, dir, modelConfig(sum, `backend = "emulated"
    emulated_device_bytes = 16777216`, "")+fmt.Sprintf(`
plugin "audit-syslog" {
  kind    = "audit_sink"
  path    = %q
  network = true
}
`, syslogBin))
	replaceInFile(t, cfg, "audit {\n", fmt.Sprintf(`audit {
  require          = "any"
  shutdown_timeout = "2s"
  sink "siem" {
    plugin = "audit-syslog"
    config {
      transport      = "relp"
      address        = %q
      flush_interval = "100ms"
    }
  }
`, srv.Addr()))

	h := startHost(t, dir)
	h.waitStarted()
	waitFor(t, func() bool { return len(srv.Lines()) >= 5 })
	srv.Stop(t)
	outage := time.Now()
	time.Sleep(4 * time.Second)
	h.signal(syscall.SIGTERM)
	if code := h.wait(); code != 3 {
		t.Errorf("first host: exit %d, want 3 (the syslog sink's events spooled)", code)
	}
	h2 := startHost(t, dir)
	h2.waitStarted()
	time.Sleep(time.Until(outage.Add(10 * time.Second)))
	before := len(srv.Lines())
	srv.Restart(t)
	back := time.Now()
	for len(srv.Lines()) == before {
		if time.Since(back) > 10*time.Second {
			t.Fatal("nothing delivered 10 s after the receiver came back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if took := time.Since(back); took > 2*time.Second {
		t.Errorf("delivery resumed %s after the receiver came back, want within 2 s", took)
	}
	time.Sleep(1500 * time.Millisecond)
	h2.signal(syscall.SIGTERM)
	if code := h2.wait(); code != 0 {
		t.Errorf("second host: exit %d", code)
	}
	trail := trailEvents(t, filepath.Join(dir, "trail", "audit.log"))
	last := trail[len(trail)-1].Seq
	lines := srv.WaitLines(t, int(last), 10*time.Second)
	got := receivedSeqs(t, lines)
	for seq := uint64(1); seq <= last; seq++ {
		switch n := got[seq]; {
		case n == 0:
			t.Errorf("seq %d never reached the receiver", seq)
		case n > 1:
			t.Errorf("seq %d reached the receiver %d times", seq, n)
		}
	}
	if t.Failed() {
		t.Logf("trail: seqs 1 to %d; the receiver got %d records", last, len(lines))
	}
}
