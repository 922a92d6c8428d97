package main

// End-to-end tests: the real vramward binary and the real audit-file plugin,
// run as processes.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audittest"
	"github.com/vramward/vramward/sdk/plugintest"
)

var (
	update    = flag.Bool("update", false, "rewrite golden files")
	hostBin   string
	sinkBin   string
	loaderBin string
	syslogBin string
	vramBin   string // built with the vramward_tamper tag: tests corrupt shards
	// faultyLoaderBin is built with vramward_faults: it dies on "crash-me".
	faultyLoaderBin string
	// hostileBin is a third-party sink that attacks the host (testdata);
	// hostileLoaderBin the shipped loader built with vramward_hostile, which
	// attacks it once configured.
	hostileBin, hostileLoaderBin string
)

func TestMain(m *testing.M) {
	flag.Parse()
	plugintest.Main(m, func(dir string) (err error) {
		if hostBin, err = plugintest.Build(dir, ".", "vramward"); err != nil {
			return err
		}
		if sinkBin, err = plugintest.Build(dir, "../../../plugins/audit-file", "vramward-plugin-audit-file"); err != nil {
			return err
		}
		if loaderBin, err = plugintest.Build(dir, "../../../plugins/loader-gguf", "vramward-plugin-loader-gguf"); err != nil {
			return err
		}
		if syslogBin, err = plugintest.Build(dir, "../../../plugins/audit-syslog", "vramward-plugin-audit-syslog"); err != nil {
			return err
		}
		if vramBin, err = plugintest.Build(dir, "../../../plugins/vram-cuda", "vramward-plugin-vram-cuda", "vramward_tamper"); err != nil {
			return err
		}
		if hostileBin, err = plugintest.Build(dir, "./testdata/probing-sink", "vramward-plugin-probing"); err != nil {
			return err
		}
		if hostileLoaderBin, err = plugintest.Build(filepath.Join(dir, "hostile"), "../../../plugins/loader-gguf", "vramward-plugin-loader-gguf", "vramward_hostile"); err != nil {
			return err
		}
		faultyLoaderBin, err = plugintest.Build(filepath.Join(dir, "faulty"), "../../../plugins/loader-gguf", "vramward-plugin-loader-gguf", "vramward_faults")
		return err
	})
}

type host struct {
	t       *testing.T
	dir     string
	cmd     *exec.Cmd
	mu      sync.Mutex
	logs    []map[string]any
	started chan string // metrics address
	exited  chan error
}

// configHead writes the worker token into dir and returns the config's
// worker, metrics and audit-file plugin blocks.
func configHead(t *testing.T, dir string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`
worker {
  id         = "e2e"
  token_file = "token"
  state_dir  = "state"
}
metrics {
  listen = "127.0.0.1:0"
}
plugin "audit-file" {
  kind = "audit_sink"
  path = %q
}
`, sinkBin)
}

func writeConfig(t *testing.T, dir, extra string) string {
	t.Helper()
	cfg := configHead(t, dir) + `audit {
  sink "local" {
    plugin = "audit-file"
    config {
      path = abspath("trail/audit.log")
    }
  }
}
` + extra
	path := filepath.Join(dir, "vramward.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startHost runs `vramward run` and waits until it logged its start.
func startHost(t *testing.T, dir string) *host {
	t.Helper()
	h := &host{t: t, dir: dir, started: make(chan string, 1), exited: make(chan error, 1)}
	h.cmd = exec.Command(hostBin, "run", "-config", filepath.Join(dir, "vramward.hcl"))
	stderr, err := h.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if h.cmd.ProcessState == nil {
			_ = h.cmd.Process.Kill()
			<-h.exited
		}
	})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var entry map[string]any
			if json.Unmarshal(sc.Bytes(), &entry) != nil {
				continue
			}
			h.mu.Lock()
			h.logs = append(h.logs, entry)
			h.mu.Unlock()
			if entry["@message"] == "vramward started" {
				h.started <- entry["metrics"].(string)
			}
		}
		h.exited <- h.cmd.Wait()
	}()
	return h
}

func (h *host) waitStarted() string {
	h.t.Helper()
	select {
	case addr := <-h.started:
		return addr
	case err := <-h.exited:
		h.t.Fatalf("vramward exited before starting: %v\n%v", err, h.logs)
	case <-time.After(20 * time.Second):
		h.t.Fatal("vramward did not start")
	}
	return ""
}

func (h *host) signal(s syscall.Signal) {
	h.t.Helper()
	if err := h.cmd.Process.Signal(s); err != nil {
		h.t.Fatal(err)
	}
}

func (h *host) wait() int {
	h.t.Helper()
	select {
	case <-h.exited:
		return h.cmd.ProcessState.ExitCode()
	case <-time.After(30 * time.Second):
		h.t.Fatal("vramward did not exit")
	}
	return -1
}

// trailEvents reads a trail's events, its AuditCheckpoint records left
// out: tests of what the host recorded look at the events, and verifyCLI
// checks the checkpoints.
func trailEvents(t *testing.T, path string) []audit.Event {
	t.Helper()
	var out []audit.Event
	for _, e := range audittest.ReadJSONLines(t, path) {
		if e.Type != audit.AuditCheckpoint {
			out = append(out, e)
		}
	}
	return out
}

func verifyCLI(t *testing.T, dir string, files ...string) string {
	t.Helper()
	args := append([]string{"audit", "verify", "-key", filepath.Join(dir, "state", "audit.pub")}, files...)
	out, err := exec.Command(hostBin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("vramward audit verify: %v\n%s", err, out)
	}
	return string(out)
}

// TestRunAndSIGTERM: start, ready, SIGTERM; the trail runs from HostStarted
// to HostStopped, verifies with the key, and no plugin process is left.
func TestRunAndSIGTERM(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, "")
	h := startHost(t, dir)
	addr := h.waitStarted()
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz %d", resp.StatusCode)
	}
	h.signal(syscall.SIGTERM)
	if code := h.wait(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	trail := filepath.Join(dir, "trail", "audit.log")
	events := trailEvents(t, trail)
	if events[0].Type != audit.HostStarted || events[len(events)-1].Type != audit.HostStopped {
		t.Fatalf("trail runs from %s to %s", events[0].Type, events[len(events)-1].Type)
	}
	if r, _ := events[len(events)-1].Field("reason"); r.String() != "signal terminated" {
		t.Errorf("HostStopped reason %q", r.String())
	}
	out := verifyCLI(t, dir, trail)
	if !strings.HasPrefix(out, "OK: ") || strings.Contains(out, "not HostStopped") {
		t.Errorf("verify said:\n%s", out)
	}
	for _, e := range events {
		if e.Type == audit.PluginStarted {
			pid, _ := e.Field("pid")
			plugintest.WaitExited(t, int(pid.Uint()))
		}
	}
}

// TestSIGINTAndRestartContinueTheChain: a second run continues the chain
// of the first; SIGINT takes the same path as SIGTERM.
func TestSIGINTAndRestartContinueTheChain(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, "")
	for i := 0; i < 2; i++ {
		h := startHost(t, dir)
		h.waitStarted()
		h.signal(syscall.SIGINT)
		if code := h.wait(); code != 0 {
			t.Fatalf("run %d: exit code %d", i, code)
		}
	}
	out := verifyCLI(t, dir, filepath.Join(dir, "trail", "audit.log"))
	// Each run: HostStarted, PluginStarted, a checkpoint, HostStopped and
	// its checkpoint.
	if !strings.Contains(out, "seq 1 to 10, tree size 10") || strings.Contains(out, "note:") {
		t.Fatalf("two clean runs should make one log of 10 records:\n%s", out)
	}
}

// TestSIGHUPReopens: logrotate moves the trail and signals; later records
// go to a new file and both verify as one chain.
func TestSIGHUPReopens(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, "")
	h := startHost(t, dir)
	h.waitStarted()
	trail := filepath.Join(dir, "trail", "audit.log")
	// PluginStarted is written right after the start log line; wait for it.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if data, _ := os.ReadFile(trail); bytes.Count(data, []byte("\n")) >= 2 {
			break
		}
	}
	if err := os.Rename(trail, trail+".1"); err != nil {
		t.Fatal(err)
	}
	h.signal(syscall.SIGHUP)
	time.Sleep(200 * time.Millisecond)
	h.signal(syscall.SIGTERM)
	if code := h.wait(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if ev := trailEvents(t, trail); len(ev) != 1 || ev[0].Type != audit.HostStopped {
		t.Fatalf("new file holds %v", ev)
	}
	// Given newest first, as a shell glob would: verify orders them.
	if out := verifyCLI(t, dir, trail, trail+".1"); !strings.Contains(out, "OK: 5 records") {
		t.Fatalf("verify:\n%s", out)
	}
}

// TestValidateReportsPluginKeys: `vramward validate` decodes each sink's
// config block against the schema the real plugin publishes, and reports
// every problem at its file:line:col.
func TestValidateReportsPluginKeys(t *testing.T) {
	dir := t.TempDir()
	cfgPath := writeConfig(t, dir, "")
	src, _ := os.ReadFile(cfgPath)
	bad := strings.Replace(string(src), `path = abspath("trail/audit.log")`,
		"path = abspath(\"trail/audit.log\")\n      max_byte = 10\n      max_files = \"ten\"", 1)
	if err := os.WriteFile(cfgPath, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(hostBin, "validate", "-config", "vramward.hcl")
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("validate: want exit 1, got %v", err)
	}
	got := diagLines(stderr.String())
	plugintest.Golden(t, filepath.Join("testdata", "validate_plugin_keys.golden"), []byte(got), *update)
	if _, err := os.Stat(filepath.Join(dir, "trail")); !errors.Is(err, os.ErrNotExist) {
		t.Error("validate configured the plugin: the trail directory exists")
	}
}

// diagLines keeps the diagnostic lines, dropping log lines and the
// machine-specific plugin path.
func diagLines(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "vramward.hcl:") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n") + "\n"
}

func TestVerifyReportsTheFirstBadRecord(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, "")
	for i := 0; i < 2; i++ {
		h := startHost(t, dir)
		h.waitStarted()
		h.signal(syscall.SIGTERM)
		h.wait()
	}
	trail := filepath.Join(dir, "trail", "audit.log")
	data, _ := os.ReadFile(trail)
	edited := bytes.Replace(data, []byte(`"reason":"signal terminated"`), []byte(`"reason":"signal interrupt!"`), 1)
	if err := os.WriteFile(trail, edited, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(hostBin, "audit", "verify", "-key", filepath.Join(dir, "state", "audit.pub"), trail).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("want exit 1, got %v", err)
	}
	if want := "audit.log:4: seq 4: edited: chain.hash does not match the record's content"; !strings.Contains(string(out), want) {
		t.Fatalf("verify said %q, want it to contain %q", out, want)
	}
}

// TestUsage: every bad command line exits 2 and says what is wrong; help
// exits 0.
func TestUsage(t *testing.T) {
	cfg := writeConfig(t, t.TempDir(), "")
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{nil, 2, "Usage:"},
		{[]string{"nope"}, 2, `unknown command "nope"`},
		{[]string{"run", "-help"}, 0, "-config"},
		{[]string{"run"}, 2, "-config FILE is required"},
		{[]string{"run", "-config", cfg, "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"run", "-config", cfg, "-log-level", "loud"}, 2, `-log-level "loud": want one of trace, debug, info, warn, error`},
		{[]string{"run", "-nope"}, 2, "flag provided but not defined"},
		{[]string{"validate", "-help"}, 0, "-config"},
		{[]string{"validate"}, 2, "-config FILE is required"},
		{[]string{"validate", "-config", cfg, "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"audit"}, 2, "want a subcommand: verify, checkpoint or prove"},
		{[]string{"audit", "nope"}, 2, "want a subcommand: verify, checkpoint or prove"},
		{[]string{"audit", "verify", "-help"}, 0, "-checkpoint"},
		{[]string{"audit", "verify", "-help"}, 0, "-copy"},
		{[]string{"audit", "verify"}, 2, "-key is required"},
		{[]string{"audit", "verify", "-key", "k"}, 2, "no TRAIL file given"},
		{[]string{"audit", "checkpoint"}, 2, "-config is required"},
		{[]string{"audit", "prove", "-key", "k", "x", "t"}, 2, `SEQ "x" is not a record's seq`},
		{[]string{"audit", "prove", "-help"}, 0, "-check"},
		{[]string{"version"}, 0, "plugin protocol 1"},
		{[]string{"version", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"gguf"}, 2, "usage: vramward gguf inspect"},
		{[]string{"gguf", "inspect", "-help"}, 0, "-json"},
		{[]string{"gguf", "inspect"}, 2, "want one MODEL"},
		{[]string{"gguf", "inspect", "a", "b"}, 2, "want one MODEL"},
		{[]string{"-help"}, 0, "SIGHUP"},
	} {
		var out bytes.Buffer
		code := run(tc.args, &out, &out)
		if code != tc.code || !strings.Contains(out.String(), tc.out) {
			t.Errorf("vramward %v: exit %d, output %q; want %d and %q", tc.args, code, out.String(), tc.code, tc.out)
		}
	}
}

// TestHelpTexts: each command's -help has its description, flags, examples
// and every exit code, and the README's exit code table is the same.
func TestHelpTexts(t *testing.T) {
	for _, name := range commandOrder {
		var out bytes.Buffer
		args := append(strings.Fields(name), "-help")
		if code := run(args, &out, &out); code != 0 {
			t.Fatalf("%s -help: exit %d", name, code)
		}
		help := out.String()
		for _, part := range []string{"usage: vramward " + name, "Examples:\n  vramward", "Exit codes:\n"} {
			if !strings.Contains(help, part) {
				t.Errorf("%s -help lacks %q:\n%s", name, part, help)
			}
		}
		for _, ec := range commands[name].codes {
			if !strings.Contains(help, fmt.Sprintf("  %d  %s\n", ec.code, ec.meaning)) {
				t.Errorf("%s -help lacks exit code %d", name, ec.code)
			}
		}
	}
	doc := readme(t)
	if !strings.Contains(doc, "| command | code | meaning |\n| --- | --- | --- |\n"+exitCodeTable()+"\n\n") {
		t.Errorf("README's exit code table differs from the commands'; it should read:\n%s", exitCodeTable())
	}
}
