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

	"github.com/vramward/vramward/sdk/gguftest"
	"github.com/vramward/vramward/sdk/hostiletest"
	"github.com/vramward/vramward/sdk/sandbox"
)

// hostileConfig writes a config with the probing sink beside audit-file,
// its binary two directories below dir (where sdk/hostiletest looks for
// its targets), and the token in the host's environment.
func hostileConfig(t *testing.T) (dir, bin string) {
	t.Helper()
	dir = t.TempDir()
	plugins := filepath.Join(dir, "plugins")
	must(t, os.MkdirAll(plugins, 0o755))
	bin = filepath.Join(plugins, "vramward-plugin-hostile")
	data, err := os.ReadFile(hostileBin)
	must(t, err)
	must(t, os.WriteFile(bin, data, 0o755))
	cfg := writeConfig(t, dir, "")
	t.Setenv("VRAMWARD_HOSTILE_TOKEN", "0123456789abcdef0123456789abcdef")
	replaceInFile(t, cfg, `token_file = "token"`, `token_env  = "VRAMWARD_HOSTILE_TOKEN"`)
	replaceInFile(t, cfg, "audit {\n", "audit {\n  sink \"evil\" {\n    plugin = \"hostile\"\n  }\n")
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteString("plugin \"hostile\" {\n  kind = \"audit_sink\"\n  path = \"" + bin + "\"\n}\n")
	must(t, err)
	must(t, f.Close())
	return dir, bin
}

// running lists the processes whose executable is bin.
func running(bin string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink("/proc/" + e.Name() + "/exe"); err == nil && strings.TrimSuffix(exe, " (deleted)") == bin {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestValidateWithAHostilePlugin: validate starts the probing sink only to
// read its schema, under the host's sandbox: its SIGHUP does not reach
// validate, which exits 0 (the schema is empty and valid) and leaves no
// process of the plugin running.
func TestValidateWithAHostilePlugin(t *testing.T) {
	if abi := sandbox.ABI(); abi < 6 {
		t.Skipf("Landlock ABI %d: scoping signals needs 6", abi)
	}
	dir, bin := hostileConfig(t)
	out, err := exec.Command(hostBin, "validate", "-config", filepath.Join(dir, "vramward.hcl")).CombinedOutput()
	if code := exitOf(err); code != 0 {
		t.Fatalf("validate: exit %d\n%s", code, out)
	}
	if !strings.Contains(string(out), `"probe":"SIGHUP the host","refused":true`) {
		t.Errorf("the plugin's SIGHUP to validate was not refused:\n%s", out)
	}
	for deadline := time.Now().Add(5 * time.Second); len(running(bin)) > 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("validate left the plugin running: %v", running(bin))
		}
	}
}

// hostileProbes are what sdk/hostiletest tries; each must be refused.
var hostileProbes = []string{"host environ", "host memory", "state chain.state.a", "state chain.state.b", "state log.key",
	"token file", "another sink's trail", "ptrace the host", "SIGHUP the host", "signal any other process", "TCP",
	"capabilities", "io_uring", "write /tmp", "status socket"}

// reportedProbes are every probe a hostile plugin reports: the process
// table one is refused only where the host makes PID namespaces.
var reportedProbes = append(hostileProbes[:len(hostileProbes):len(hostileProbes)], "the host's process table")

// TestHostilePluginIsHeld: a third-party sink built with the SDK, configured
// beside audit-file and run by the real host as a real process, attacks the
// host from main(), before audit.Serve (before any sandbox of its own): the
// token in the host's environ, the host's memory, the state dir (epoch key,
// identity key), the token file, the other sink's trail, ptrace, signals to
// the host and to any other process, TCP (the metrics port), capabilities,
// files outside its directories and the status socket. Every probe is
// refused, the host keeps serving, and the status shows what the host
// enforced on that plugin.
func TestHostilePluginIsHeld(t *testing.T) {
	if abi := sandbox.ABI(); abi < 6 {
		t.Skipf("Landlock ABI %d: scoping signals needs 6", abi)
	}
	dir, _ := hostileConfig(t)
	token := "0123456789abcdef0123456789abcdef"
	runProbed(t, dir, token, "hostile")
}

// TestHostileLoaderIsHeld: the shipped loader's worst case, a build that
// turns hostile once it is configured (it holds its roots): every probe is
// refused by the host's sandbox, and the model it was given still loads.
func TestHostileLoaderIsHeld(t *testing.T) {
	if abi := sandbox.ABI(); abi < 6 {
		t.Skipf("Landlock ABI %d: scoping signals needs 6", abi)
	}
	dir := t.TempDir()
	sum := writeModel(t, gguftest.Small(), filepath.Join(dir, "models", "m.gguf"))
	plugins := filepath.Join(dir, "plugins")
	must(t, os.MkdirAll(plugins, 0o755))
	bin := filepath.Join(plugins, "vramward-plugin-loader-gguf")
	data, err := os.ReadFile(hostileLoaderBin)
	must(t, err)
	must(t, os.WriteFile(bin, data, 0o755))
	cfg := writeConfig(t, dir, modelConfig(sum, `backend = "emulated"
    emulated_device_bytes = 16777216`, ""))
	replaceInFile(t, cfg, fmt.Sprintf("%q", loaderBin), fmt.Sprintf("%q", bin))
	runProbed(t, dir, "", "loader-gguf")
}

// runProbed runs the host on dir's config until the plugin named plugin
// reported every probe, asserts each was refused and that the status shows
// what the host enforced on it.
func runProbed(t *testing.T, dir, token, plugin string) {
	t.Helper()

	h := startHost(t, dir)
	h.waitStarted()
	results := map[string]map[string]any{}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		h.mu.Lock()
		for _, e := range h.logs {
			if e["@message"] == "hostile probe" {
				results[e["probe"].(string)] = e
			}
		}
		h.mu.Unlock()
		if len(results) >= len(reportedProbes) || time.Now().After(deadline) {
			break
		}
	}
	if len(results) < len(reportedProbes) {
		h.mu.Lock()
		for _, e := range h.logs {
			if m, _ := e["@module"].(string); strings.Contains(m, "hostile") || strings.Contains(m, "evil") {
				t.Logf("log: %v", e)
			}
		}
		h.mu.Unlock()
	}
	probes := hostileProbes
	if os.Geteuid() == 0 {
		// A root host gives every plugin a PID namespace and its /proc.
		probes = reportedProbes
	}
	for _, p := range probes {
		r, ok := results[p]
		switch {
		case !ok:
			t.Errorf("probe %q did not report", p)
		case r["refused"] != true:
			t.Errorf("probe %q was NOT refused: %v", p, r["detail"])
		default:
			t.Logf("refused: %s: %v", p, r["detail"])
		}
	}
	// The control: the same file probes from this test's process, which
	// the host does not confine, reach every target (the host's memory and
	// environ too, where this test runs as root).
	if err := hostiletest.IOURing(); err != nil {
		t.Logf("control: io_uring refused outside the sandbox too (%v): that probe proves nothing here", err)
	}
	for _, r := range hostiletest.Files(dir, h.cmd.Process.Pid) {
		if r.Refused && (os.Geteuid() == 0 || !strings.HasPrefix(r.Probe, "host ")) {
			t.Errorf("control: %s refused outside the sandbox too (%s): the probe proves nothing", r.Probe, r.Detail)
		}
	}
	code, st, out := statusOf(t, dir)
	if code != 0 {
		t.Fatalf("the host does not serve after the attack (exit %d):\n%s", code, out)
	}
	found := false
	for _, p := range st.Plugins {
		if p.Name == plugin {
			found = true
			if !p.Sandboxed || !strings.HasPrefix(p.Sandbox, "host-enforced: landlock") || !strings.Contains(p.Sandbox, "seccomp true, no_new_privs true, CapEff 0000000000000000") {
				t.Errorf("status of the hostile plugin: sandboxed %v, %q", p.Sandboxed, p.Sandbox)
			}
			if os.Geteuid() == 0 {
				// Its cgroup with the kind's default limits, or why the
				// host could make none (pluginhost's tests hold the
				// limits themselves).
				if !strings.Contains(p.Sandbox, "cgroup vramward-plugin-"+plugin) && !strings.Contains(p.Sandbox, "no cgroup limits: ") {
					t.Errorf("status of the hostile plugin says nothing of its cgroup: %q", p.Sandbox)
				}
				t.Logf("status: %s", p.Sandbox)
				if !strings.Contains(p.Sandbox, "namespaces pid, mount") {
					t.Errorf("status of the hostile plugin names no PID and mount namespace: %q", p.Sandbox)
				}
				// The pid the host knows the plugin by is not the one
				// its /proc shows it.
				if d, _ := results["the host's process table"]["detail"].(string); strings.Contains(d, fmt.Sprintf("/proc/self is %d,", p.PID)) {
					t.Errorf("the plugin's /proc is the host's: %s (pid %d to the host)", d, p.PID)
				}
			}
		}
	}
	if !found {
		t.Fatalf("no plugin %s in the status:\n%s", plugin, out)
	}
	// The text view says it too, a line per plugin.
	text, _ := exec.Command(hostBin, "status", "-config", filepath.Join(dir, "vramward.hcl")).CombinedOutput()
	if !strings.Contains(string(text), "\n  "+plugin+": host-enforced: landlock") {
		t.Errorf("the status text does not show the hostile plugin's sandbox:\n%s", text)
	}
	if token != "" {
		if strings.Contains(out, token) {
			t.Fatal("the status holds the token")
		}
		// token_env is gone from the kernel's copy of the environment too
		// (the host re-executed itself without it).
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", h.cmd.Process.Pid))
		must(t, err)
		if strings.Contains(string(env), token) || strings.Contains(string(env), "VRAMWARD_HOSTILE_TOKEN") {
			t.Error("the token is still in the host's environ block")
		}
	}
	h.signal(syscall.SIGTERM)
	if code := h.wait(); code != 0 {
		t.Fatalf("exit %d", code)
	}
}
