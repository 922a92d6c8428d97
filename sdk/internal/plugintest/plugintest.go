// Package plugintest connects a test to a plugin over real gRPC, either
// served in-process (go-plugin's test connection) or as a built binary
// launched the way the host launches it.
package plugintest

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"

	"github.com/vramward/vramward/sdk/handshake"
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
	cmd := exec.Command(path)
	cmd.Env = append(cmd.Environ(), env...)
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
	t.Cleanup(c.Kill)
	rpc, err := c.Client()
	if err != nil {
		t.Fatalf("start plugin %s: %v", path, err)
	}
	raw, err := rpc.Dispense(kind)
	if err != nil {
		t.Fatalf("dispense %s: %v", kind, err)
	}
	return raw, c
}
