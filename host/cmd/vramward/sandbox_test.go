package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vramward/vramward/sdk/audit/sinkclient"
	"github.com/vramward/vramward/sdk/handshake"
	"github.com/vramward/vramward/sdk/loader"
	"github.com/vramward/vramward/sdk/plugintest"
	"github.com/vramward/vramward/sdk/sandbox"
	"github.com/vramward/vramward/sdk/vram"
)

// TestEveryPluginSandboxesItself launches each shipped plugin as the host
// would and configures it, with a probe: right after it restricted itself,
// the plugin opens a file outside its allowance. Landlock must be in force
// and the probe refused (EACCES), and a file inside the allowance still
// opens. Skipped, saying why, only on a kernel without Landlock.
func TestEveryPluginSandboxesItself(t *testing.T) {
	if abi := sandbox.ABI(); abi == 0 {
		t.Skip("this kernel has no Landlock: plugins run unsandboxed and say so")
	}
	secret := filepath.Join(t.TempDir(), "outside")
	must(t, os.WriteFile(secret, []byte("x"), 0o600))
	ctx := context.Background()
	m, err := sinkclient.NewMetrics(prometheus.NewRegistry())
	must(t, err)
	models := t.TempDir()
	inside := filepath.Join(models, "inside.gguf")
	must(t, os.WriteFile(inside, []byte("GGUF"), 0o600))

	cases := []struct {
		name, bin string
		probe     string // the path to open after Configure
		opens     bool
		configure func(t *testing.T, env []string) (bool, string)
	}{
		{"audit-file", sinkBin, secret, false, func(t *testing.T, env []string) (bool, string) {
			// The directory first: cleanups run last-first, so the plugin
			// is stopped before its trail is removed.
			trail := filepath.Join(t.TempDir(), "trail", "audit.log")
			raw, _ := plugintest.Binary(t, sinkBin, handshake.KindAuditSink, sinkclient.Plugin(sinkclient.Options{Sink: "f", Metrics: m}), env...)
			c := raw.(*sinkclient.Client)
			cfg, _ := json.Marshal(map[string]any{"path": trail})
			must(t, c.Configure(ctx, cfg))
			return c.Sandbox()
		}},
		{"audit-syslog", syslogBin, secret, false, func(t *testing.T, env []string) (bool, string) {
			raw, _ := plugintest.Binary(t, syslogBin, handshake.KindAuditSink, sinkclient.Plugin(sinkclient.Options{Sink: "s", Metrics: m}), env...)
			c := raw.(*sinkclient.Client)
			must(t, c.Configure(ctx, []byte(`{"transport": "udp", "address": "127.0.0.1:9"}`)))
			return c.Sandbox()
		}},
		{"loader-gguf outside", loaderBin, secret, false, func(t *testing.T, env []string) (bool, string) {
			raw, _ := plugintest.Binary(t, loaderBin, handshake.KindModelLoader, loader.PluginForHost(nil), env...)
			c := raw.(*loader.Client)
			cfg, _ := json.Marshal(map[string]any{"allowed_roots": []string{models}})
			must(t, c.Configure(ctx, cfg))
			return c.Sandbox()
		}},
		{"loader-gguf inside", loaderBin, inside, true, func(t *testing.T, env []string) (bool, string) {
			raw, _ := plugintest.Binary(t, loaderBin, handshake.KindModelLoader, loader.PluginForHost(nil), env...)
			c := raw.(*loader.Client)
			cfg, _ := json.Marshal(map[string]any{"allowed_roots": []string{models}})
			must(t, c.Configure(ctx, cfg))
			return c.Sandbox()
		}},
		{"vram-cuda (emulated)", vramBin, secret, false, func(t *testing.T, env []string) (bool, string) {
			raw, _ := plugintest.Binary(t, vramBin, handshake.KindVramBackend, vram.PluginForHost(nil), env...)
			c := raw.(*vram.Client)
			_, err := c.Configure(ctx, []byte(`{"backend": "emulated", "emulated_device_bytes": 16777216}`), vram.Models{AllowedRoots: []string{models}})
			must(t, err)
			return c.Sandbox()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			enforced, detail := tc.configure(t, []string{sandbox.ProbeEnv + "=" + tc.probe})
			if !enforced || !strings.HasPrefix(detail, "landlock") {
				t.Fatalf("not sandboxed: %s", detail)
			}
			want := "probe " + tc.probe + ": open " + tc.probe + ": permission denied"
			if tc.opens {
				want = "probe " + tc.probe + ": opened"
			}
			if !strings.Contains(detail, want) {
				t.Fatalf("sandbox %q, want %q", detail, want)
			}
			t.Logf("%s", detail)
		})
	}
}
