package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/gguftest"
	"github.com/vramward/vramward/sdk/plugintest"
)

// failedStart is one `vramward run` that is expected to fail closed.
type failedStart struct {
	code       int
	took       time.Duration
	lastScrape string // the last /metrics body read before the host exited
	logs       string
}

// runUntilExit runs the host on dir's config, scraping /metrics every 20 ms
// from the moment it is served until the host exits.
func runUntilExit(t *testing.T, dir string) failedStart {
	t.Helper()
	cmd := exec.Command(hostBin, "run", "-config", filepath.Join(dir, "vramward.hcl"))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	begun := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	addr := make(chan string, 1)
	var logs strings.Builder
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.Write(sc.Bytes())
			logs.WriteByte('\n')
			var entry map[string]any
			if json.Unmarshal(sc.Bytes(), &entry) == nil && entry["@message"] == "serving metrics" {
				addr <- entry["metrics"].(string)
			}
		}
	}()
	exited := make(chan struct{})
	var res failedStart
	scraped := make(chan string, 1)
	go func() {
		last := ""
		defer func() { scraped <- last }()
		var a string
		select {
		case a = <-addr:
		case <-exited:
			return
		}
		for {
			select {
			case <-exited:
				return
			case <-time.After(20 * time.Millisecond):
			}
			resp, err := http.Get("http://" + a + "/metrics")
			if err != nil {
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = string(b)
		}
	}()
	// A host that went on without its sink never exits by itself.
	killer := time.AfterFunc(15*time.Second, func() { _ = cmd.Process.Kill() })
	defer killer.Stop()
	<-readDone
	werr := cmd.Wait()
	res.took = time.Since(begun)
	close(exited)
	res.lastScrape = <-scraped
	res.logs = logs.String()
	res.code = cmd.ProcessState.ExitCode()
	if werr != nil && res.code < 0 {
		t.Fatalf("vramward: %v", werr)
	}
	return res
}

// metricSum adds up the samples of name whose labels contain every label.
func metricSum(body, name string, labels ...string) float64 {
	sum := 0.0
	re := regexp.MustCompile(`^` + name + `\{([^}]*)\} (\S+)$`)
	for _, line := range strings.Split(body, "\n") {
		m := re.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(m[1], l)
		}
		if v, err := strconv.ParseFloat(m[2], 64); ok && err == nil {
			sum += v
		}
	}
	return sum
}

// TestFailsClosedWithoutItsOnlySink tries every way the only audit sink can
// fail to come up. The host must do nothing it cannot record: no model
// checked, loaded or sealed; exit 1 within start_timeout + 2 s; no plugin
// process left; the failures counted on a scrape before it exits; and the
// events of that start delivered first at the next good start.
func TestFailsClosedWithoutItsOnlySink(t *testing.T) {
	scripts := map[string]string{
		"hangs":                "echo $$ >> PIDS\nexec sleep 600\n",
		"child holds pipes":    "sleep 600 &\necho $! >> PIDS\nexit 0\n",
		"hangs with a child":   "sleep 600 &\necho $! $$ >> PIDS\nwait\n",
		"exits at once (true)": "",
	}
	cases := []string{"pinned wrong", "hangs", "child holds pipes", "hangs with a child", "exits at once (true)"}
	for _, name := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			pids := filepath.Join(dir, "pids")
			sum := writeModel(t, gguftest.Small(), filepath.Join(dir, "models", "tiny.gguf"))
			models := loaderConfig() + fmt.Sprintf(`
model "tiny" {
  path   = "models/tiny.gguf"
  sha256 = %q
}
`, sum)
			cfg := writeConfig(t, dir, models)
			src, _ := os.ReadFile(cfg)
			good := string(src)
			var bad string
			switch name {
			case "pinned wrong":
				bad = strings.Replace(good, "kind = \"audit_sink\"\n", "kind = \"audit_sink\"\n  sha256 = \""+strings.Repeat("0", 64)+"\"\n  start_timeout = \"1s\"\n", 1)
			case "exits at once (true)":
				bad = strings.Replace(good, "path = \""+sinkBin+"\"", "path = \"/bin/true\"\n  start_timeout = \"1s\"", 1)
			default:
				script := filepath.Join(dir, "sink.sh")
				if err := os.WriteFile(script, []byte("#!/bin/sh\n"+strings.ReplaceAll(scripts[name], "PIDS", pids)), 0o700); err != nil {
					t.Fatal(err)
				}
				bad = strings.Replace(good, "path = \""+sinkBin+"\"", "path = \""+script+"\"\n  start_timeout = \"1s\"", 1)
			}
			if bad == good {
				t.Fatal("the test did not change the config")
			}
			if err := os.WriteFile(cfg, []byte(bad), 0o600); err != nil {
				t.Fatal(err)
			}

			res := runUntilExit(t, dir)
			if res.code != 1 {
				t.Fatalf("exit %d, want 1\n%s", res.code, res.logs)
			}
			if res.took > 3*time.Second+500*time.Millisecond {
				t.Errorf("took %s to fail with start_timeout 1s", res.took)
			}
			if !strings.Contains(res.logs, `audit.require = \"all\" is not met`) {
				t.Errorf("the log does not say why the start failed:\n%s", res.logs)
			}
			if strings.Contains(res.logs, "vramward started") || strings.Contains(res.logs, `"plugin":"loader-gguf"`) {
				t.Errorf("the host went on without its sink:\n%s", res.logs)
			}
			if res.lastScrape == "" {
				t.Fatal("/metrics was never scraped while the host ran")
			}
			if n := metricSum(res.lastScrape, "vramward_audit_emit_failures_total", `sink="local"`); n < 1 {
				t.Errorf("emit failures %v on the last scrape:\n%s", n, res.lastScrape)
			}
			if name == "pinned wrong" {
				if n := metricSum(res.lastScrape, "vramward_audit_critical_emit_failures_total", `sink="local"`); n != 1 {
					t.Errorf("CRITICAL emit failures %v, want 1 (PluginChecksumMismatch)", n)
				}
			}
			deadline := time.Now().Add(2 * time.Second)
			for _, pid := range plugintest.ReadPids(t, pids) {
				for plugintest.Running(pid) && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
				if plugintest.Running(pid) {
					t.Errorf("pid %d outlived the host", pid)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "trail")); err == nil && name != "pinned wrong" {
				// Only the real plugin could make it; nothing else ran.
				t.Errorf("a trail directory exists")
			}

			// The next good start delivers the failed start's events first.
			if err := os.WriteFile(cfg, []byte(good), 0o600); err != nil {
				t.Fatal(err)
			}
			h := startHost(t, dir)
			h.waitStarted()
			h.signal(syscall.SIGTERM)
			if code := h.wait(); code != 0 {
				t.Fatalf("good start: exit %d", code)
			}
			events := trailEvents(t, filepath.Join(dir, "trail", "audit.log"))
			var types []string
			for _, e := range events {
				types = append(types, string(e.Type))
			}
			second := -1
			for i, e := range events {
				if i > 0 && e.Type == audit.HostStarted {
					second = i
					break
				}
			}
			if events[0].Type != audit.HostStarted || second < 0 {
				t.Fatalf("trail: %v", types)
			}
			first := strings.Join(types[:second], " ")
			if !strings.Contains(first, "AuditSinkFailed") || !strings.HasSuffix(first, "HostStopped") {
				t.Errorf("the failed start's events, first in the trail: %v", types[:second])
			}
			if name == "pinned wrong" && !strings.Contains(first, "PluginChecksumMismatch") {
				t.Errorf("PluginChecksumMismatch not delivered first: %v", types)
			}
			if stop := events[second-1]; !strings.Contains(fmt.Sprint(stop.Fields), "start failed") {
				t.Errorf("HostStopped of the failed start: %v", stop.Fields)
			}
			verifyCLI(t, dir, filepath.Join(dir, "trail", "audit.log"))
		})
	}
}

// brokenSinkPlugin is a sink plugin that never starts (/bin/true exits at
// once), for a second sink that is down.
const brokenSinkPlugin = `
plugin "broken" {
  kind          = "audit_sink"
  path          = "/bin/true"
  start_timeout = "1s"
}
`

// TestExitsThreeWhenEventsWereSpooled: with require = "any", one sink up
// and one that never starts, the host serves; at SIGTERM what the second
// sink never took is spooled, the shutdown says so and run exits 3.
func TestExitsThreeWhenEventsWereSpooled(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, brokenSinkPlugin)
	src, _ := os.ReadFile(cfg)
	withAny := strings.Replace(string(src), "audit {\n", `audit {
  require          = "any"
  shutdown_timeout = "1s"
  sink "never" {
    plugin = "broken"
  }
`, 1)
	if err := os.WriteFile(cfg, []byte(withAny), 0o600); err != nil {
		t.Fatal(err)
	}
	h := startHost(t, dir)
	h.waitStarted()
	h.signal(syscall.SIGTERM)
	if code := h.wait(); code != 3 {
		t.Fatalf("exit %d, want 3", code)
	}
	if _, err := os.Stat(filepath.Join(dir, "state", "spool-never.jsonl")); err != nil {
		t.Fatalf("no spool for the sink that never started: %v", err)
	}
	events := trailEvents(t, filepath.Join(dir, "trail", "audit.log"))
	if last := events[len(events)-1]; last.Type != audit.HostStopped {
		t.Errorf("the good sink's trail ends with %s", last.Type)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func replaceInFile(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s lacks %q", path, old)
	}
	must(t, os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o600))
}

func exitOf(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestGroupSignalAndClosedOutput runs the host as a terminal would, its
// output piped into `head -1` (which exits after the first line), then
// sends SIGTERM to the whole process group. The plugins, in groups of their
// own, must not get it; the host must survive its closed output and shut
// down in order: the shard released (VramDeallocated), HostStopped last,
// exit 0.
func TestGroupSignalAndClosedOutput(t *testing.T) {
	dir := t.TempDir()
	sum := writeModel(t, gguftest.Small(), filepath.Join(dir, "models", "m.gguf"))
	cfg := writeConfig(t, dir, modelConfig(sum, `backend = "emulated"
    emulated_device_bytes = 16777216`, ""))
	codeFile := filepath.Join(dir, "code")
	// The subshell's trap only waits: a handler (unlike an ignored signal)
	// is not inherited by vramward.
	script := fmt.Sprintf(`{ trap ':' TERM; %q run -config %q; echo $? > %q; } 2>&1 | head -1 >/dev/null; wait`, hostBin, cfg, codeFile)
	cmd := exec.Command("bash", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	must(t, cmd.Start())
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	trail := filepath.Join(dir, "trail", "audit.log")
	sealed := func() bool {
		if _, err := os.Stat(trail); err != nil {
			return false
		}
		for _, e := range trailEvents(t, trail) {
			if e.Type == audit.SealVerified {
				return true
			}
		}
		return false
	}
	waitFor(t, sealed)
	must(t, syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM))
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(codeFile); err == nil && len(b) > 0 {
			if code := strings.TrimSpace(string(b)); code != "0" {
				t.Fatalf("vramward exited %s", code)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("vramward did not exit after the group's SIGTERM")
		}
		time.Sleep(50 * time.Millisecond)
	}
	events := trailEvents(t, trail)
	var types []string
	for _, e := range events {
		types = append(types, string(e.Type))
	}
	joined := strings.Join(types, " ")
	if !strings.HasSuffix(joined, "VramDeallocated HostStopped") {
		t.Fatalf("trail does not end with the shard released and HostStopped: %s", joined)
	}
	if strings.Contains(joined, "PluginCrashed") {
		t.Errorf("a plugin got the group's signal: %s", joined)
	}
}
