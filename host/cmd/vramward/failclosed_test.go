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

// TestExitsThreeWhenEventsWereSpooled: with require = "any", one sink up
// and one that never starts, the host serves; at SIGTERM what the second
// sink never took is spooled, the shutdown says so and run exits 3.
func TestExitsThreeWhenEventsWereSpooled(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, `
plugin "broken" {
  kind          = "audit_sink"
  path          = "/bin/true"
  start_timeout = "1s"
}
`)
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

// TestValidateRefusesWhatRunRefuses: every config run refuses before it
// does anything, validate refuses too, with the reason, and without
// starting, creating or opening for writing anything.
func TestValidateRefusesWhatRunRefuses(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, dir, cfg string)
		want  string
	}{
		{"token file readable by others", func(t *testing.T, dir, _ string) {
			must(t, os.Chmod(filepath.Join(dir, "token"), 0o644))
		}, "readable by group or others"},
		{"token file missing", func(t *testing.T, dir, _ string) {
			must(t, os.Remove(filepath.Join(dir, "token")))
		}, "no such file"},
		{"token too short", func(t *testing.T, dir, _ string) {
			must(t, os.WriteFile(filepath.Join(dir, "token"), []byte("8bytes!!"), 0o600))
		}, "holds 8 bytes; use at least 16"},
		{"sink path is a directory", func(t *testing.T, dir, _ string) {
			must(t, os.MkdirAll(filepath.Join(dir, "trail", "audit.log"), 0o700))
		}, "is a directory; want a file"},
		{"trail directory writable by others", func(t *testing.T, dir, _ string) {
			must(t, os.MkdirAll(filepath.Join(dir, "trail"), 0o700))
			must(t, os.Chmod(filepath.Join(dir, "trail"), 0o777))
		}, "writable by group or others"},
		{"state_dir is a file", func(t *testing.T, dir, _ string) {
			must(t, os.WriteFile(filepath.Join(dir, "state"), nil, 0o600))
		}, "state is not a directory"},
		{"plugin pinned wrong", func(t *testing.T, _, cfg string) {
			replaceInFile(t, cfg, "kind = \"audit_sink\"\n", "kind = \"audit_sink\"\n  sha256 = \""+strings.Repeat("1", 64)+"\"\n")
		}, "the config pins " + strings.Repeat("1", 64)},
		{"plugin binary writable by others", func(t *testing.T, dir, cfg string) {
			p := filepath.Join(dir, "plugin")
			b, err := os.ReadFile(sinkBin)
			must(t, err)
			must(t, os.WriteFile(p, b, 0o700))
			must(t, os.Chmod(p, 0o757))
			replaceInFile(t, cfg, "path = \""+sinkBin+"\"", "path = \""+p+"\"")
		}, "is writable by group or others"},
		{"plugin directory writable by others", func(t *testing.T, dir, cfg string) {
			bins := filepath.Join(dir, "bins")
			must(t, os.MkdirAll(bins, 0o700))
			b, err := os.ReadFile(sinkBin)
			must(t, err)
			must(t, os.WriteFile(filepath.Join(bins, "sink"), b, 0o700))
			must(t, os.Chmod(bins, 0o777))
			replaceInFile(t, cfg, "path = \""+sinkBin+"\"", "path = \""+filepath.Join(bins, "sink")+"\"")
		}, "its directory"},
		{"state_dir open to others", func(t *testing.T, dir, _ string) {
			must(t, os.MkdirAll(filepath.Join(dir, "state"), 0o700))
			must(t, os.Chmod(filepath.Join(dir, "state"), 0o755))
		}, "open to group or others"},
		{"metrics listen address unparsable", func(t *testing.T, _, cfg string) {
			replaceInFile(t, cfg, `listen = "127.0.0.1:0"`, `listen = "999.1.1.1:99999"`)
		}, `"999.1.1.1:99999": port "99999" is not a number from 0 to 65535`},
		{"metrics listen host not an address", func(t *testing.T, _, cfg string) {
			replaceInFile(t, cfg, `listen = "127.0.0.1:0"`, `listen = "999.1.1.1:9464"`)
		}, `"999.1.1.1" is not an IPv4 address`},
		{"state_dir read-only", func(t *testing.T, dir, _ string) {
			state := filepath.Join(dir, "state")
			must(t, os.MkdirAll(state, 0o700))
			readOnly(t, state)
		}, "is not writable by the host"},
		{"env token too short", func(t *testing.T, dir, cfg string) {
			replaceInFile(t, cfg, `token_file = "token"`, `token_env  = "VRAMWARD_SHORT_TOKEN"`)
			t.Setenv("VRAMWARD_SHORT_TOKEN", "short")
		}, "holds 5 bytes; use at least 16"},
		{"plugin not executable", func(t *testing.T, dir, cfg string) {
			p := filepath.Join(dir, "plugin")
			must(t, os.WriteFile(p, []byte("#!/bin/sh\n"), 0o600))
			replaceInFile(t, cfg, "path = \""+sinkBin+"\"", "path = \""+p+"\"")
		}, "is not executable"},
	}
	t.Run("valid", func(t *testing.T) {
		dir := t.TempDir()
		cfg := writeConfig(t, dir, "")
		out, err := exec.Command(hostBin, "validate", "-config", cfg).CombinedOutput()
		if code := exitOf(err); code != 0 || !strings.Contains(string(out), ": valid (") {
			t.Errorf("validate of a good config: exit %d:\n%s", code, out)
		}
		if _, err := os.Stat(filepath.Join(dir, "trail")); err == nil {
			t.Error("validate created the trail directory")
		}
	})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := writeConfig(t, dir, "")
			tc.setup(t, dir, cfg)
			out, err := exec.Command(hostBin, "validate", "-config", cfg).CombinedOutput()
			if code := exitOf(err); code != 1 || !strings.Contains(string(out), tc.want) {
				t.Errorf("validate: exit %d, want 1 and %q in:\n%s", code, tc.want, out)
			}
			if !strings.Contains(string(out), "vramward.hcl:") {
				t.Errorf("validate does not point into the config:\n%s", out)
			}
			if _, err := os.Stat(filepath.Join(dir, "trail", "audit.log.1")); err == nil {
				t.Error("validate wrote a trail")
			}
			start := time.Now()
			res := runUntilExit(t, dir)
			if res.code != 1 {
				t.Errorf("run: exit %d, want 1:\n%s", res.code, res.logs)
			}
			if took := time.Since(start); took > 8*time.Second {
				t.Errorf("run took %s to refuse", took)
			}
		})
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

// TestTokenNeverReachesAPlugin runs the host with every kind of plugin and
// the token from each source, then reads /proc/PID/environ of every plugin
// it started (their pids are in the PluginStarted records): the token is in
// none of them.
func TestTokenNeverReachesAPlugin(t *testing.T) {
	const token = "tok-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
	for _, source := range []string{"token_env", "token_file", "token_credential"} {
		t.Run(source, func(t *testing.T) {
			dir := t.TempDir()
			sum := writeModel(t, gguftest.Small(), filepath.Join(dir, "models", "m.gguf"))
			cfg := writeConfig(t, dir, modelConfig(sum, `backend = "emulated"
    emulated_device_bytes = 16777216`, ""))
			must(t, os.WriteFile(filepath.Join(dir, "token"), []byte(token), 0o600))
			switch source {
			case "token_env":
				replaceInFile(t, cfg, `token_file = "token"`, `token_env  = "VRAMWARD_TEST_TOKEN"`)
				t.Setenv("VRAMWARD_TEST_TOKEN", token)
			case "token_credential":
				replaceInFile(t, cfg, `token_file = "token"`, `token_credential = "token"`)
				t.Setenv("CREDENTIALS_DIRECTORY", dir)
			}
			h := startHost(t, dir)
			h.waitStarted()
			trail := filepath.Join(dir, "trail", "audit.log")
			var pids []uint64
			waitFor(t, func() bool {
				pids = pids[:0]
				for _, e := range trailEvents(t, trail) {
					if e.Type == audit.PluginStarted {
						v, _ := e.Field("pid")
						pids = append(pids, v.Uint())
					}
				}
				return len(pids) == 3
			})
			for _, pid := range pids {
				env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
				if err != nil {
					t.Fatalf("plugin pid %d: %v", pid, err)
				}
				if strings.Contains(string(env), token) || strings.Contains(string(env), "VRAMWARD_TEST_TOKEN") || strings.Contains(string(env), "CREDENTIALS_DIRECTORY") {
					t.Errorf("plugin pid %d can read the token source in its environment", pid)
				}
			}
			h.signal(syscall.SIGTERM)
			if code := h.wait(); code != 0 {
				t.Fatalf("exit %d", code)
			}
		})
	}
}

// TestHostileInfoAnswerIsBounded: a sink plugin answers Info with a 300 MiB
// name, or a 1,000-byte one. validate and run refuse it with a clear error,
// and the host's peak RSS stays under 100 MiB (it refuses the message
// instead of allocating it).
func TestHostileInfoAnswerIsBounded(t *testing.T) {
	built, err := plugintest.Build(t.TempDir(), "./testdata/hostile-sink", "hostile-sink")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(built)
	must(t, err)
	for _, tc := range []struct {
		size int
		want string
	}{
		{300 << 20, "larger than max"},
		{1000, "name is 1000 bytes long; at most 128"},
	} {
		t.Run(strconv.Itoa(tc.size), func(t *testing.T) {
			// The size is in the binary's name: the host's sandbox lets a
			// plugin read no file beside it.
			bin := filepath.Join(t.TempDir(), "hostile-sink-"+strconv.Itoa(tc.size))
			must(t, os.WriteFile(bin, data, 0o755))
			dir := t.TempDir()
			cfg := writeConfig(t, dir, "")
			replaceInFile(t, cfg, "path = \""+sinkBin+"\"", "path = \""+bin+"\"\n  start_timeout = \"4s\"")
			out, err := exec.Command(hostBin, "validate", "-config", cfg).CombinedOutput()
			if code := exitOf(err); code != 1 || !strings.Contains(string(out), tc.want) {
				t.Errorf("validate: exit %d, want 1 and %q in:\n%.2000s", code, tc.want, out)
			}
			// run fails closed after start_timeout; meanwhile the host's own
			// high-water mark (not its plugin's) is read from /proc.
			cmd := exec.Command(hostBin, "run", "-config", cfg)
			var logs strings.Builder
			cmd.Stderr = &logs
			must(t, cmd.Start())
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			hwm := 0
		poll:
			for {
				select {
				case err = <-done:
					break poll
				case <-time.After(20 * time.Millisecond):
				}
				b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
				for _, line := range strings.Split(string(b), "\n") {
					if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
						kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
						hwm = max(hwm, kb)
					}
				}
			}
			if code := exitOf(err); code != 1 || !strings.Contains(logs.String(), tc.want) {
				t.Errorf("run: exit %d, want 1 and %q in:\n%.2000s", code, tc.want, logs.String())
			}
			if hwm == 0 || hwm > 100<<10 {
				t.Errorf("run: the host's peak RSS was %d KiB", hwm)
			}
			t.Logf("run: the host's peak RSS %d MiB", hwm>>10)
		})
	}
}

// readOnly makes dir unwritable for the host: a read-only bind mount when
// the test runs as root (root writes through any mode bits), mode 0500
// otherwise.
func readOnly(t *testing.T, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		must(t, os.Chmod(dir, 0o500))
		t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
		return
	}
	if out, err := exec.Command("mount", "--bind", "-o", "ro", dir, dir).CombinedOutput(); err != nil {
		t.Skipf("cannot make a read-only bind mount here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// TestLostStateDirNextToATrailIsRefused: the state dir deleted whole while
// the trail stays. The next start is refused, naming the sink, its trail
// and the ways out, and writes nothing (no new log appended after the old
// one); `run -new-log` starts one on purpose. Before, a new log started
// silently after the old records (exit 0).
func TestLostStateDirNextToATrailIsRefused(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, "")
	h := startHost(t, dir)
	h.waitStarted()
	h.signal(syscall.SIGTERM)
	if code := h.wait(); code != 0 {
		t.Fatalf("first run: exit %d", code)
	}
	trailPath := filepath.Join(dir, "trail", "audit.log")
	before, err := os.ReadFile(trailPath)
	must(t, err)
	must(t, os.RemoveAll(filepath.Join(dir, "state")))
	res := runUntilExit(t, dir)
	if res.code != 1 || !strings.Contains(res.logs, "holds no audit log") || !strings.Contains(res.logs, trailPath) || !strings.Contains(res.logs, "-new-log") {
		t.Fatalf("start with the state dir gone: exit %d:\n%s", res.code, res.logs)
	}
	after, err := os.ReadFile(trailPath)
	must(t, err)
	if string(after) != string(before) {
		t.Fatal("the refused start wrote to the trail")
	}
	if _, err := os.Stat(filepath.Join(dir, "state", "audit.pub")); err == nil {
		t.Fatal("the refused start made a new log's key")
	}
	cmd := exec.Command(hostBin, "run", "-new-log", "-config", filepath.Join(dir, "vramward.hcl"))
	must(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "state", "audit.pub")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("run -new-log did not start a new log")
		}
		time.Sleep(50 * time.Millisecond)
	}
	must(t, cmd.Process.Signal(syscall.SIGTERM))
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run -new-log: %v", err)
	}
}
