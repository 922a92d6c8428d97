package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	hostaudit "github.com/vramward/vramward/host/audit"
	"github.com/vramward/vramward/host/config"
	"github.com/vramward/vramward/host/pluginhost"
	"github.com/vramward/vramward/host/trail"
	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audittest"
	"github.com/vramward/vramward/sdk/plugintest"
)

var fileSinkBin string

func TestMain(m *testing.M) {
	plugintest.Main(m, func(dir string) (err error) {
		fileSinkBin, err = plugintest.Build(dir, "../../plugins/audit-file", "vramward-plugin-audit-file")
		return err
	})
}

type env struct {
	dir string
	cfg *config.Config
}

// newEnv writes a config with the given sink blocks (%[1]s is the plugin
// path, %[2]s the directory) and loads it.
func newEnv(t testing.TB, audit string) *env {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf(`
worker {
  id         = "test-node"
  token_file = "token"
  state_dir  = "state"
}
metrics {
  listen = "127.0.0.1:0"
}
plugin "file" {
  kind = "audit_sink"
  path = %[1]q
}
`+audit, fileSinkBin, dir)
	path := filepath.Join(dir, "vramward.hcl")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, diags := config.Load(path)
	if diags.HasErrors() {
		t.Fatal(config.Format(diags))
	}
	return &env{dir: dir, cfg: cfg}
}

const oneSink = `
audit {
  shutdown_timeout = "10s"
  sink "local" {
    plugin = "file"
    config {
      path           = abspath("trail/audit.log")
      flush_interval = "100ms"
    }
  }
}
`

func start(t *testing.T, e *env) *Daemon {
	t.Helper()
	d, err := Start(context.Background(), Options{Config: e.cfg, Logger: hclog.New(&hclog.LoggerOptions{Output: io.Discard}), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func readTrail(t *testing.T, files ...string) []audit.Event {
	t.Helper()
	return audittest.ReadJSONLines(t, files...)
}

func verifyTrail(t *testing.T, e *env, files ...string) trail.Report {
	t.Helper()
	key, _, err := trail.ReadVerifierKey(filepath.Join(e.cfg.Worker.StateDir, hostaudit.PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := trail.VerifyFiles(trail.Options{Key: key}, files...)
	if err != nil {
		t.Fatalf("trail does not verify: %v", err)
	}
	return rep
}

func emitN(t *testing.T, d *Daemon, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		e, err := audit.New(audit.SealVerified, audit.Actor{WorkerID: "w"}, audit.Str("shard_id", fmt.Sprintf("s-%d", i)), audit.Uint("gpu_device", 0))
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Bus().Emit(context.Background(), e); err != nil {
			t.Fatalf("emit %d: %v", i, err)
		}
	}
}

func pluginPid(t *testing.T, d *Daemon) int {
	t.Helper()
	c := d.conns[0]
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc == nil {
		t.Fatal("plugin not running")
	}
	return c.proc.Pid
}

// TestKill9PluginDuringStream: the audit-file plugin is SIGKILLed while
// events stream in; the host notices, records the crash, restarts the plugin
// and re-sends what it had not acknowledged. The trail holds every seq
// exactly once and verifies.
func TestKill9PluginDuringStream(t *testing.T) {
	e := newEnv(t, oneSink)
	d := start(t, e)
	pid := pluginPid(t, d)
	// Half before the kill, half after: events keep coming while the
	// plugin is dead (with a fixed sleep before the kill, a fast host had
	// delivered every event already and nothing noticed the crash).
	emitN(t, d, 1500)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	emitN(t, d, 1500)
	// Wait for the restart to deliver, then stop.
	for deadline := time.Now().Add(15 * time.Second); d.Bus().Depth()["local"] > 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	newPid := pluginPid(t, d)
	if newPid == pid {
		t.Fatal("plugin was not restarted")
	}
	if n := audittest.MetricSum(t, d.reg, "vramward_plugin_restarts_total"); n != 1 {
		t.Errorf("plugin_restarts_total = %v, want 1", n)
	}
	if err := d.Shutdown("test done"); err != nil {
		t.Fatal(err)
	}
	plugintest.WaitExited(t, newPid)

	trailFile := filepath.Join(e.dir, "trail", "audit.log")
	rep := verifyTrail(t, e, trailFile)
	events := readTrail(t, trailFile)
	seen := map[uint64]bool{}
	var crashed, started int
	for _, ev := range events {
		if seen[ev.Seq] {
			t.Fatalf("seq %d twice", ev.Seq)
		}
		seen[ev.Seq] = true
		switch ev.Type {
		case audit.PluginCrashed:
			crashed++
			if v, _ := ev.Field("exit_reason"); !strings.Contains(v.String(), "killed") {
				t.Errorf("exit_reason %q", v.String())
			}
			if v, _ := ev.Field("kind"); v.String() != "audit_sink" {
				t.Errorf("kind %q", v.String())
			}
		case audit.PluginStarted:
			started++
		}
	}
	if rep.FirstSeq != 1 || uint64(len(events)) != rep.LastSeq {
		t.Fatalf("trail has %d records for seqs %d..%d", len(events), rep.FirstSeq, rep.LastSeq)
	}
	if crashed != 1 || started != 2 {
		t.Errorf("PluginCrashed %d, PluginStarted %d; want 1 and 2", crashed, started)
	}
	if n := len(events); events[0].Type != audit.HostStarted || events[n-2].Type != audit.HostStopped || events[n-1].Type != audit.AuditCheckpoint {
		t.Errorf("trail runs from %s to %s, %s", events[0].Type, events[n-2].Type, events[n-1].Type)
	}
}

// TestChecksumMismatchIsRecordedElsewhere: a plugin whose binary differs
// from its pinned sha256 is never run, and the CRITICAL event lands on the
// other sink.
func TestChecksumMismatchIsRecordedElsewhere(t *testing.T) {
	e := newEnv(t, `
plugin "pinned" {
  kind   = "audit_sink"
  path   = %[1]q
  sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
}
audit {
  require          = "any"
  shutdown_timeout = "500ms"
  sink "good" {
    plugin = "file"
    config {
      path = abspath("good/audit.log")
    }
  }
  sink "refused" {
    plugin = "pinned"
    config {
      path = abspath("refused/audit.log")
    }
  }
}
`)
	d := start(t, e)
	ready, why := d.ready()
	if ready || !strings.Contains(why, "refused") {
		t.Errorf("ready=%v (%s) with a refused plugin", ready, why)
	}
	deadline := time.Now().Add(10 * time.Second)
	var found *audit.Event
	for found == nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		if _, err := os.Stat(filepath.Join(e.dir, "good", "audit.log")); err != nil {
			continue
		}
		for _, ev := range readTrail(t, filepath.Join(e.dir, "good", "audit.log")) {
			if ev.Type == audit.PluginChecksumMismatch {
				found = &ev
			}
		}
	}
	if found == nil {
		t.Fatal("no PluginChecksumMismatch in the other sink")
	}
	if found.Severity != audit.Critical {
		t.Errorf("severity %s", found.Severity)
	}
	if v, _ := found.Field("actual_sha256"); len(v.String()) != 64 {
		t.Errorf("actual_sha256 %q", v.String())
	}
	if _, err := os.Stat(filepath.Join(e.dir, "refused")); !errors.Is(err, os.ErrNotExist) {
		t.Error("the refused plugin ran: its output directory exists")
	}
	_ = d.Shutdown("test done")
}

// TestSpoolCarriesUndeliveredToTheNextStart: what misses the shutdown
// deadline is spooled, the shutdown says so, and the next start delivers it
// first. The plugin is frozen (SIGSTOP) while the events are emitted, so
// that nothing can be delivered in time, on any machine.
func TestSpoolCarriesUndeliveredToTheNextStart(t *testing.T) {
	e := newEnv(t, strings.Replace(oneSink, `shutdown_timeout = "10s"`, `shutdown_timeout = "100ms"`, 1))
	d := start(t, e)
	if err := syscall.Kill(pluginPid(t, d), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	emitN(t, d, 30000)
	if err := d.Shutdown("test: short deadline"); err == nil || !strings.Contains(err.Error(), "spooled") {
		t.Fatalf("a shutdown that spooled events returned %v", err)
	}
	spool := filepath.Join(e.cfg.Worker.StateDir, "spool-local.jsonl")
	if _, err := os.Stat(spool); err != nil {
		t.Fatalf("no spool after a shutdown that could deliver nothing: %v", err)
	}
	d2 := start(t, e)
	for deadline := time.Now().Add(20 * time.Second); d2.Bus().Depth()["local"] > 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if err := d2.Shutdown("test done"); err != nil {
		t.Fatal(err)
	}
	trailFile := filepath.Join(e.dir, "trail", "audit.log")
	rep := verifyTrail(t, e, trailFile)
	if n := len(readTrail(t, trailFile)); uint64(n) != rep.LastSeq || n < 30000 {
		t.Fatalf("%d records, last seq %d", n, rep.LastSeq)
	}
	if _, err := os.Stat(spool); !errors.Is(err, os.ErrNotExist) {
		t.Error("spool left after it was delivered")
	}
}

// TestHealthzAndMetrics: /healthz is ready with every plugin up and the
// exposition passes promtool.
func TestHealthzAndMetrics(t *testing.T) {
	e := newEnv(t, oneSink)
	d := start(t, e)
	defer d.Shutdown("test done")
	resp, err := http.Get("http://" + d.MetricsAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz %d", resp.StatusCode)
	}
	emitN(t, d, 10)
	for deadline := time.Now().Add(5 * time.Second); d.Bus().Depth()["local"] > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	resp, err = http.Get("http://" + d.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{
		"vramward_audit_events_total", "vramward_audit_emit_failures_total", "vramward_audit_critical_emit_failures_total",
		"vramward_audit_flush_failures_total", "vramward_audit_queue_depth", "vramward_audit_emit_duration_seconds",
		"vramward_plugin_up", "vramward_plugin_restarts_total",
	} {
		if !strings.Contains(string(body), "\n# TYPE "+name+" ") {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	promtool := plugintest.RequireTool(t, "promtool")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(string(body))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// The file sink's schema marks its trail as a written file: its copy is on
// the node (it gets checkpoints at once; a start after a crash reads it).
// A sink with nothing written on the node, or one not started yet, is off
// it, so its checkpoints wait for the state.
func TestFileSinkKeepsItsCopyOnTheNode(t *testing.T) {
	e := newEnv(t, oneSink)
	d := start(t, e)
	defer d.Shutdown("test done")
	if !d.conns[0].OnNode() {
		t.Fatal("the file sink's copy is not taken as on the node")
	}
	if (&sinkConn{}).OnNode() {
		t.Fatal("a sink never started is taken as on the node")
	}
	if (&sinkConn{starts: 1}).OnNode() {
		t.Fatal("a sink that writes no file is taken as on the node")
	}
}

// The files a start after a crash rolls forward over: each sink's trail,
// after the file it rotated last, where a rotation may have moved the
// records past the state.
func TestSinkTrailsNameTheRotatedFileFirst(t *testing.T) {
	e := newEnv(t, oneSink)
	launcher := &pluginhost.Launcher{Logger: hclog.NewNullLogger()}
	live := filepath.Join(e.dir, "trail", "audit.log")
	if got := sinkTrails(e.cfg, launcher)(); len(got) != 1 || got[0] != live {
		t.Fatalf("trails %q, want %q", got, live)
	}
	if err := os.MkdirAll(filepath.Dir(live), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(live+".1", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := sinkTrails(e.cfg, launcher)(); len(got) != 2 || got[0] != live+".1" || got[1] != live {
		t.Fatalf("trails %q, want the rotated file, then %q", got, live)
	}
}
