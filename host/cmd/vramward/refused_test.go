package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/gguftest"
	"github.com/vramward/vramward/sdk/plugintest"
)

// What the host refuses: a config or state dir validate and run cannot
// use, a start next to another log's trail, a plugin's oversized answer,
// and any way for a plugin to read the token.

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
