// Package plugintest connects a test to a plugin of any kind over real gRPC,
// either served in-process (go-plugin's test connection) or as a built
// binary launched the way the host launches it. Plugin authors use it from
// their own tests, as the conformance harnesses do.
package plugintest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"

	"github.com/vramward/vramward/sdk/handshake"
	"github.com/vramward/vramward/sdk/internal/lane"
)

// InProcess serves p in this process and returns the dispensed client half.
// p must hold both halves (server and client options).
func InProcess(t testing.TB, kind string, p plugin.Plugin) any {
	t.Helper()
	client, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{kind: p})
	// Close asks the server to stop through go-plugin's controller; stopping
	// it here as well would race with that stop inside go-plugin.
	t.Cleanup(func() { _ = client.Close() })
	raw, err := client.Dispense(kind)
	if err != nil {
		t.Fatalf("dispense %s: %v", kind, err)
	}
	return raw
}

// Binary launches the plugin binary at path with AutoMTLS, as the host does,
// and returns the dispensed client half of p and the go-plugin client (for
// its pid, or to kill it). The process is killed in t.Cleanup.
func Binary(t testing.TB, path, kind string, p plugin.Plugin, env ...string) (any, *plugin.Client) {
	t.Helper()
	raw, c, err := Launch(path, kind, p, env...)
	t.Cleanup(c.Kill)
	if err != nil {
		t.Fatal(err)
	}
	return raw, c
}

// Launch is Binary without a test: the caller kills the returned client.
// A plugin kind whose host half has a lane (an audit sink's record lane)
// gets one, as the host gives it; its host end closes with the client's
// Shutdown.
func Launch(path, kind string, p plugin.Plugin, env ...string) (any, *plugin.Client, error) {
	cmd := exec.Command(path)
	cmd.Env = append(cmd.Environ(), env...)
	var laneHost net.Conn
	if lm, ok := p.(interface{ LaneEnv() string }); ok {
		host, child, err := lane.Pair()
		if err != nil {
			return nil, nil, err
		}
		defer child.Close()
		laneHost = host
		cmd.ExtraFiles = []*os.File{child}
		cmd.Env = append(cmd.Env, lm.LaneEnv()+"=3")
	}
	c := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  handshake.Config,
		VersionedPlugins: map[int]plugin.PluginSet{handshake.ProtocolVersion: {kind: p}},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     15 * time.Second,
		// Not t.Log: the plugin's stderr is forwarded by a goroutine that
		// can outlive the test.
		Logger: hclog.New(&hclog.LoggerOptions{Name: "plugin", Level: hclog.Warn, Output: os.Stderr}),
	})
	rpc, err := c.Client()
	if err != nil {
		return nil, c, fmt.Errorf("start plugin %s: %w", path, err)
	}
	raw, err := rpc.Dispense(kind)
	if err != nil {
		return nil, c, fmt.Errorf("dispense %s: %w", kind, err)
	}
	if lu, ok := raw.(interface{ AttachLane(net.Conn) }); ok && laneHost != nil {
		lu.AttachLane(laneHost)
	}
	return raw, c, nil
}

// Build compiles the plugin's main package (a path such as "." or
// "./plugins/audit-file") into dir and returns the binary's path. Tests call
// it once, from TestMain.
func Build(dir, pkg, name string, tags ...string) (string, error) {
	out := filepath.Join(dir, name)
	args := []string{"build", "-o", out}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	cmd := exec.Command("go", append(args, pkg)...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, msg)
	}
	return out, nil
}

// RequireTool returns the path of an external program a test needs. Where
// it is missing the test is skipped, unless VRAMWARD_CI is set: CI installs
// every such tool, so there a missing one is a failure, not a skip.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("VRAMWARD_CI") != "" {
		t.Fatalf("%s is required (VRAMWARD_CI is set) but not installed: %v", name, err)
	}
	t.Skipf("%s not installed; .ci/run installs it", name)
	return ""
}

// WaitExited waits (up to 15 s) until the process pid has exited, exited
// and awaits its reaper, or is gone; it fails the test otherwise.
func WaitExited(t testing.TB, pid int) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Contains(string(st), ") Z ") {
			return
		}
	}
	t.Fatalf("process %d is still running", pid)
}

// Context is a context for one RPC of a test: it ends after 30 seconds,
// so that a hung plugin fails the test instead of stalling it, and with
// the test.
func Context(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// Main is a TestMain for packages whose tests run built binaries: build
// puts them into a temporary directory that is removed after the tests.
func Main(m *testing.M, build func(dir string) error) {
	dir, err := os.MkdirTemp("", "vramward-test-bin-")
	if err == nil {
		err = build(dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Golden compares got with the golden file at path, rewriting the file
// first when update is set (tests pass their -update flag).
func Golden(t testing.TB, path string, got []byte, update bool) {
	t.Helper()
	if update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the test with -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("output differs from %s (run with -update if the change is intended):\n--- got\n%s--- want\n%s", path, got, want)
	}
}

// ReadPids reads the process ids a test script wrote to path (white-space
// separated); none when the file is missing.
func ReadPids(t testing.TB, path string) []int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("pid file %s: %v", path, err)
		}
		pids = append(pids, n)
	}
	return pids
}

// Running reports whether pid is a process that runs; a zombie left for
// init to reap does not.
func Running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
