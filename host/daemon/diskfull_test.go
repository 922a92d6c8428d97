package daemon

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audittest"
)

// mountTmpfs mounts a file system of size bytes at dir (mode 0700) for the
// test, when the test runs as root; otherwise it skips, saying why.
func mountTmpfs(t *testing.T, dir string, size int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small file system (CI runs as root)")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.Itoa(size)+",mode=0700", "tmpfs", dir).CombinedOutput()
	if err != nil {
		if os.Getenv("VRAMWARD_CI") != "" {
			t.Fatalf("mount tmpfs: %v: %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// TestDiskFullFailsClosedAndResumes fills the trail's file system while
// events flow. Every CRITICAL emit is refused and counted in both failure
// series; no partial line is left in the trail; once space is freed the
// sink resumes and every held event lands, each seq exactly once.
func TestDiskFullFailsClosedAndResumes(t *testing.T) {
	e := newEnv(t, oneSink)
	trailDir := filepath.Join(e.dir, "trail")
	mountTmpfs(t, trailDir, 512<<10)
	filler := filepath.Join(trailDir, "filler")
	if err := os.WriteFile(filler, make([]byte, 448<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	d := start(t, e)
	emitN(t, d, 1000) // about 300 KiB of records: far more than is left
	deadline := time.Now().Add(10 * time.Second)
	for d.bus.Up() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if d.bus.Up() {
		t.Fatal("the sink never failed on a full file system")
	}
	const refused = 5
	for i := 0; i < refused; i++ {
		ev, err := audit.New(audit.IntegrityViolation, audit.Actor{}, audit.Str("resource_type", "model"), audit.Str("resource_id", "m"),
			audit.Str("expected_hash", "a"), audit.Str("actual_hash", "b"), audit.Str("action_taken", "rejected"))
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Bus().Emit(context.Background(), ev); err == nil {
			t.Fatal("a CRITICAL emit returned nil with the trail's disk full")
		}
	}
	for _, name := range []string{"vramward_audit_critical_emit_failures_total", "vramward_audit_emit_failures_total"} {
		labels := []string{"sink", "local"}
		if strings.HasPrefix(name, "vramward_audit_emit") {
			labels = append(labels, "severity", "CRITICAL")
		}
		if got := audittest.MetricSum(t, d.reg, name, labels...); got < refused {
			t.Errorf("%s%v = %v after %d refused CRITICAL emits", name, labels, got, refused)
		}
	}
	// Space comes back: everything held is delivered.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(20 * time.Second)
	for (!d.bus.Up() || d.Bus().Depth()["local"] > 0) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := d.Shutdown("test done"); err != nil {
		t.Fatalf("shutdown after the disk freed: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(trailDir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	seen, last := trailSeqs(t, raw)
	for seq := uint64(1); seq <= last; seq++ {
		if seen[seq] != 1 {
			t.Errorf("seq %d is in the trail %d times", seq, seen[seq])
		}
	}
	if last < 1000+refused {
		t.Errorf("the trail ends at seq %d", last)
	}
}

// TestStateAndTrailShareAFullDisk: the state dir (with the spool) and the
// trail are on one small file system, and it fills while events flow. The
// host fails closed and loses nothing silently: every CRITICAL emit is
// refused, what no copy got is counted, the trail holds no seq twice and no
// partial line, and once space is freed the host serves again and stops
// cleanly.
func TestStateAndTrailShareAFullDisk(t *testing.T) {
	e := newEnv(t, oneSink)
	disk := filepath.Join(e.dir, "disk")
	mountTmpfs(t, disk, 1<<20)
	for _, sub := range []string{"trail", "state"} {
		if err := os.Mkdir(filepath.Join(disk, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(disk, "trail"), filepath.Join(e.dir, "trail")); err != nil {
		t.Fatal(err)
	}
	e.cfg.Worker.StateDir = filepath.Join(disk, "state")
	e.cfg.Audit.QueueSize = 200 // what the sink cannot take goes to the spool, on the full disk
	d := start(t, e)
	filler := filepath.Join(disk, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := f.Write(make([]byte, 4096)); err != nil {
			break // the disk is full
		}
	}
	f.Close()
	sent := 0
	for i := 0; i < 3000; i++ {
		ev, err := audit.Make(audit.Actor{}, audit.SealVerifiedFields{ShardID: strconv.Itoa(i)})
		if err != nil {
			t.Fatal(err)
		}
		if d.Bus().Emit(context.Background(), ev) == nil {
			sent++
		}
	}
	for i := 0; i < 5; i++ {
		ev, err := audit.Make(audit.Actor{}, audit.IntegrityViolationFields{ResourceType: "model", ResourceID: "m", ExpectedHash: "a", ActualHash: "b", ActionTaken: "rejected"})
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Bus().Emit(context.Background(), ev); err == nil {
			t.Fatal("a CRITICAL emit returned nil with the state's and the trail's disk full")
		}
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for (!d.bus.Up() || d.Bus().Depth()["local"] > 0) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !d.bus.Up() {
		t.Fatal("the sink did not come back once space was freed")
	}
	undelivered := audittest.MetricSum(t, d.reg, "vramward_audit_emit_failures_total", "sink", "local")
	if err := d.Shutdown("test done"); err != nil {
		t.Fatalf("shutdown after the disk freed: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(disk, "trail", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	seen, last := trailSeqs(t, raw)
	missing := 0
	for seq := uint64(1); seq <= last; seq++ {
		switch seen[seq] {
		case 0:
			missing++
		case 1:
		default:
			t.Errorf("seq %d is in the trail %d times", seq, seen[seq])
		}
	}
	// Every seq the trail lacks was counted as not delivered to it (some
	// counted ones were never sealed: refused before they took a seq).
	if float64(missing) > undelivered {
		t.Errorf("the trail lacks %d seqs, %v events were counted as not delivered", missing, undelivered)
	}
	t.Logf("%d of 3000 INFO emits returned nil; the trail lacks %d seqs up to %d; %v counted as not delivered", sent, missing, last, undelivered)
}

// trailSeqs reads a trail that must hold whole records only, and counts
// each seq in it.
func trailSeqs(t *testing.T, raw []byte) (seen map[uint64]int, last uint64) {
	t.Helper()
	if len(raw) > 0 && raw[len(raw)-1] != '\n' {
		t.Fatal("the trail ends with a partial line")
	}
	seen = map[uint64]int{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(nil, 1<<20)
	for line := 1; sc.Scan(); line++ {
		ev, err := audit.ParseJSON(sc.Bytes())
		if err != nil {
			t.Fatalf("line %d is not a whole record: %v", line, err)
		}
		seen[ev.Seq]++
		last = max(last, ev.Seq)
	}
	return seen, last
}
