package main

// These tests run the built plugin binary, launched as the host launches it.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/vramward/vramward/plugins/audit-file/filesink"
	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audit/sinkclient"
	"github.com/vramward/vramward/sdk/audittest"
	"github.com/vramward/vramward/sdk/handshake"
	"github.com/vramward/vramward/sdk/plugintest"
)

var (
	pluginBin string // the release build
	faultBin  string // built with -tags faultinject
)

func TestMain(m *testing.M) {
	if os.Getenv("AUDIT_FILE_TEST_HOST") != "" {
		fakeHostThatDies()
		return
	}
	plugintest.Main(m, func(dir string) (err error) {
		if pluginBin, err = plugintest.Build(dir, ".", "vramward-plugin-audit-file"); err != nil {
			return err
		}
		faultBin, err = plugintest.Build(dir, ".", "vramward-plugin-audit-file-faultinject", "faultinject")
		return err
	})
}

func newConfig(t *testing.T) []byte {
	return []byte(fmt.Sprintf(`{"path": %q}`, filepath.Join(t.TempDir(), "audit.log")))
}

func readBack(t *testing.T, config []byte) []audit.Event {
	var cfg struct{ Path string }
	if err := json.Unmarshal(config, &cfg); err != nil {
		t.Fatal(err)
	}
	files, err := filesink.TrailFiles(cfg.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return audittest.ReadJSONLines(t, files...)
}

func TestBinaryConformance(t *testing.T) {
	audittest.RunBinary(t, pluginBin, newConfig, audittest.WithReadBack(readBack))
}

type launched struct {
	client *sinkclient.Client
	reg    *prometheus.Registry
	pid    int
	config []byte
}

func launch(t *testing.T, bin string, config string, env ...string) *launched {
	return launchWith(t, bin, config, 0, env...)
}

func launchWith(t *testing.T, bin string, config string, maxBatchBytes int, env ...string) *launched {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := sinkclient.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	raw, c := plugintest.Binary(t, bin, handshake.KindAuditSink,
		sinkclient.Plugin(sinkclient.Options{Sink: "file", Metrics: m, Logger: hclog.NewNullLogger(), MaxBatchBytes: maxBatchBytes}), env...)
	l := &launched{client: raw.(*sinkclient.Client), reg: reg, pid: c.ReattachConfig().Pid, config: []byte(config)}
	if err := l.client.Configure(context.Background(), l.config); err != nil {
		t.Fatal(err)
	}
	return l
}

// TestBinaryFailureCountersMove makes the real plugin's disk writes fail
// (RLIMIT_FSIZE, so the kernel stops a write part way) and checks that the
// host-side counters moved, the error names the errno, and no partial line
// was left in the trail.
func TestBinaryFailureCountersMove(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := launch(t, pluginBin, fmt.Sprintf(`{"path": %q}`, path))
	ctx := context.Background()
	events := audittest.Events(60)
	if err := l.client.EmitBatch(ctx, events[:10]); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	limit := uint64(st.Size() + 300) // room for part of one more line only
	if err := unix.Prlimit(l.pid, unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: limit, Max: unix.RLIM_INFINITY}, nil); err != nil {
		t.Skipf("cannot set the plugin's RLIMIT_FSIZE: %v", err)
	}
	batch := events[10:30]
	err = l.client.EmitBatch(ctx, batch)
	var se *audit.Error
	if !errors.As(err, &se) || se.Reason != audit.ReasonWriteFailed || se.Errno != "EFBIG" {
		t.Fatalf("want WRITE_FAILED with errno EFBIG, got %#v", err)
	}
	var bySeverity = map[audit.Severity]float64{}
	for _, e := range batch {
		bySeverity[e.Severity]++
	}
	for sev, n := range bySeverity {
		if got := audittest.MetricSum(t, l.reg, "vramward_audit_emit_failures_total", "sink", "file", "severity", sev.String()); got != n {
			t.Errorf("emit_failures_total{severity=%s} = %v, want %v", sev, got, n)
		}
	}
	if got := audittest.MetricSum(t, l.reg, "vramward_audit_critical_emit_failures_total", "sink", "file"); got != bySeverity[audit.Critical] {
		t.Errorf("critical_emit_failures_total = %v, want %v", got, bySeverity[audit.Critical])
	}
	if got := len(readBack(t, l.config)); got != 10 {
		t.Fatalf("trail holds %d events after the failed batch, want 10 and no partial line", got)
	}
	// The disk has room again: the host re-sends the batch and it lands once.
	if err := unix.Prlimit(l.pid, unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}, nil); err != nil {
		t.Fatal(err)
	}
	if err := l.client.EmitBatch(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if err := l.client.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := len(readBack(t, l.config)); got != 30 {
		t.Fatalf("trail holds %d events, want 30", got)
	}
}

// TestBinaryStreamStopsAtTheFirstFailure: a batch split over a stream
// fails part way (the disk fills); what was acknowledged is in the trail in
// order, nothing after the failed part is, and exactly the rest is counted.
func TestBinaryStreamStopsAtTheFirstFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := launchWith(t, pluginBin, fmt.Sprintf(`{"path": %q}`, path), 8<<10)
	events := nonCriticalEvents(400)
	line := len(events[0].AppendJSON(nil)) + 1
	limit := uint64(150 * line) // room for about 150 events
	if err := unix.Prlimit(l.pid, unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: limit, Max: unix.RLIM_INFINITY}, nil); err != nil {
		t.Skipf("cannot set the plugin's RLIMIT_FSIZE: %v", err)
	}
	err := l.client.EmitBatch(context.Background(), events)
	var se *audit.Error
	if !errors.As(err, &se) || se.Errno != "EFBIG" {
		t.Fatalf("want a write failure with EFBIG, got %v", err)
	}
	got := readBack(t, l.config)
	if len(got) == 0 || len(got) >= 160 {
		t.Fatalf("%d events written before the disk filled", len(got))
	}
	for i, e := range got {
		if e.Seq != events[i].Seq {
			t.Fatalf("record %d has seq %d, want %d: order broken", i, e.Seq, events[i].Seq)
		}
	}
	failed := audittest.MetricSum(t, l.reg, "vramward_audit_emit_failures_total", "sink", "file")
	if int(failed) != len(events)-len(got) {
		t.Errorf("emit_failures_total = %v, want the %d events not written", failed, len(events)-len(got))
	}
}

func nonCriticalEvents(n int) []audit.Event {
	var out []audit.Event
	for _, e := range audittest.Events(2 * n) {
		if e.Severity != audit.Critical && len(out) < n {
			out = append(out, e)
		}
	}
	return out
}

// TestBinaryCriticalWaitsForFlush runs a build whose fsync always fails: a
// non-CRITICAL emit is acknowledged (no flush on its path), a CRITICAL one
// is refused with the fsync's error, and the counters say so. The SDK
// therefore called Flush before answering for the CRITICAL event.
func TestBinaryCriticalWaitsForFlush(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := launch(t, faultBin, fmt.Sprintf(`{"path": %q, "flush_interval": "1h"}`, path), "VRAMWARD_FAULT_FSYNC=EIO")
	ctx := context.Background()
	var info, critical audit.Event
	for _, e := range audittest.Events(20) {
		if e.Severity == audit.Info && info.Seq == 0 {
			info = e
		}
		if e.Severity == audit.Critical && critical.Seq == 0 && info.Seq != 0 {
			critical = e
		}
	}
	if err := l.client.Emit(ctx, info); err != nil {
		t.Fatalf("INFO emit: %v", err)
	}
	err := l.client.Emit(ctx, critical)
	var se *audit.Error
	if !errors.As(err, &se) || se.Reason != audit.ReasonFlushFailed || se.Errno != "EIO" {
		t.Fatalf("CRITICAL emit: want FLUSH_FAILED with errno EIO, got %v", err)
	}
	if got := audittest.MetricSum(t, l.reg, "vramward_audit_critical_emit_failures_total", "sink", "file"); got != 1 {
		t.Errorf("critical_emit_failures_total = %v, want 1", got)
	}
	if got := audittest.MetricSum(t, l.reg, "vramward_audit_emit_failures_total", "sink", "file", "severity", "INFO"); got != 0 {
		t.Errorf("the INFO emit was counted as failed: %v", got)
	}
	if err := l.client.Flush(ctx); err == nil {
		t.Fatal("explicit Flush succeeded with a failing fsync")
	}
	if got := audittest.MetricSum(t, l.reg, "vramward_audit_flush_failures_total", "sink", "file"); got != 1 {
		t.Errorf("flush_failures_total = %v, want 1", got)
	}
}

// TestBinarySIGTERMFlushesAndExits: SIGTERM, which go-plugin leaves at its
// default, goes through the sink's one shutdown path.
func TestBinarySIGTERMFlushesAndExits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := launch(t, pluginBin, fmt.Sprintf(`{"path": %q, "flush_interval": "1h"}`, path))
	events := audittest.Events(25)
	if err := l.client.EmitBatch(context.Background(), events); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(l.pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	plugintest.WaitExited(t, l.pid)
	if got := len(readBack(t, l.config)); got != 25 {
		t.Fatalf("%d events after SIGTERM, want 25", got)
	}
	if err := l.client.Emit(context.Background(), audittest.Events(26)[25]); err == nil {
		t.Fatal("emit to a terminated plugin succeeded")
	}
}

// TestBinaryExitsWhenHostDies: a host that dies without closing its plugins
// (SIGKILL, a crash) must not leave the sink running as an orphan.
func TestBinaryExitsWhenHostDies(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), "AUDIT_FILE_TEST_HOST="+pluginBin, "AUDIT_FILE_TEST_PATH="+path)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("fake host: %v\n%s", err, out)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("fake host printed %q", out)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	plugintest.WaitExited(t, pid)
	if got := len(readBack(t, []byte(fmt.Sprintf(`{"path": %q}`, path)))); got != 15 {
		t.Fatalf("%d events in the orphan's trail, want 15", got)
	}
}

// fakeHostThatDies launches the plugin, emits, prints the plugin's pid and
// exits without closing it, as a SIGKILLed host would.
func fakeHostThatDies() {
	m, _ := sinkclient.NewMetrics(prometheus.NewRegistry())
	raw, c, err := plugintest.Launch(os.Getenv("AUDIT_FILE_TEST_HOST"), handshake.KindAuditSink,
		sinkclient.Plugin(sinkclient.Options{Sink: "file", Metrics: m}))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	client := raw.(*sinkclient.Client)
	cfg := fmt.Sprintf(`{"path": %q, "flush_interval": "1h"}`, os.Getenv("AUDIT_FILE_TEST_PATH"))
	if err := client.Configure(context.Background(), []byte(cfg)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := client.EmitBatch(context.Background(), audittest.Events(15)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(c.ReattachConfig().Pid)
	os.Exit(0)
}

// TestBinaryWaitsForTheLaneAsleepInTheKernel: the real plugin, launched as
// the host launches it (plugintest puts its end of the record lane at
// descriptor 3), waits for the next request with a thread asleep in
// read(2) on that descriptor, not in the runtime's poller, and a CRITICAL
// emit then travels on the lane.
func TestBinaryWaitsForTheLaneAsleepInTheKernel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := launch(t, pluginBin, fmt.Sprintf(`{"path": %q}`, path))
	if !l.client.Lane() {
		t.Fatal("the plugin does not serve the record lane")
	}
	want := fmt.Sprintf("%d 0x3 ", unix.SYS_READ)
	asleep := func() bool {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/syscall", l.pid))
		for _, p := range tasks {
			if b, err := os.ReadFile(p); err == nil && strings.HasPrefix(string(b), want) {
				return true
			}
		}
		return false
	}
	for i := 0; !asleep(); i++ {
		if i == 200 {
			t.Fatalf("no thread of the plugin (pid %d) sleeps in read(2) on the lane", l.pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, e := range audittest.Events(20) {
		if e.Severity == audit.Critical {
			if err := l.client.Emit(context.Background(), e); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if !l.client.Lane() {
		t.Fatal("the CRITICAL emit ended the lane's use")
	}
}
