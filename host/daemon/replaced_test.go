package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vramward/vramward/sdk/audit"
)

// TestTrailDeletedAndReplacedUnderLoad deletes the live trail, then moves it
// away and puts another file in its place, while events stream in through
// the real audit-file plugin. Every event the host had delivered must be in
// some file of the trail's directory afterwards, and the trail must record
// why the sink failed and that it recovered.
func TestTrailDeletedAndReplacedUnderLoad(t *testing.T) {
	e := newEnv(t, oneSink)
	d := start(t, e)
	trail := filepath.Join(e.dir, "trail", "audit.log")
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		emitN(t, d, 6000)
	}()
	waitSize := func(min int64) {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
			if st, err := os.Stat(trail); err == nil && st.Size() >= min {
				return
			}
		}
		t.Fatalf("the trail did not grow past %d bytes", min)
	}
	waitSize(100 << 10)
	if err := os.Remove(trail); err != nil {
		t.Fatal(err)
	}
	emitN(t, d, 500)
	waitSize(50 << 10)
	if err := os.Rename(trail, trail+".moved"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(trail, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	// Events after the tampering, whether or not the stream was still
	// going when it happened.
	emitN(t, d, 500)
	for deadline := time.Now().Add(20 * time.Second); d.Bus().Depth()["local"] > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if err := d.Shutdown("test done"); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Dir(trail))
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, en := range entries {
		files = append(files, filepath.Join(filepath.Dir(trail), en.Name()))
	}
	seen := map[uint64]bool{}
	var last uint64
	var reasons []string
	recovered := false
	for _, f := range files {
		for _, ev := range readTrail(t, f) {
			seen[ev.Seq] = true
			last = max(last, ev.Seq)
			if ev.Type == audit.AuditSinkFailed {
				r, _ := ev.Field("reason")
				reasons = append(reasons, r.String())
			}
			recovered = recovered || ev.Type == audit.AuditSinkRecovered
		}
	}
	for seq := uint64(1); seq <= last; seq++ {
		if !seen[seq] {
			t.Fatalf("seq %d of %d is in no file of %v", seq, last, files)
		}
	}
	joined := strings.Join(reasons, " | ")
	if !strings.Contains(joined, "deleted") || !strings.Contains(joined, "replaced") || !recovered {
		for _, f := range files {
			var types []string
			for _, ev := range readTrail(t, f) {
				if ev.Type != audit.SealVerified {
					types = append(types, fmt.Sprint(ev.Seq, ev.Type))
				}
			}
			t.Logf("%s: %v", f, types)
		}
		t.Errorf("AuditSinkFailed reasons %q, AuditSinkRecovered %v", joined, recovered)
	}
}
