package daemon

import (
	"testing"

	"github.com/vramward/vramward/host/config"
	"github.com/vramward/vramward/host/pluginhost"
	"github.com/vramward/vramward/sdk/handshake"
)

// TestPluginLimitsPerKind: a block that sets no limit gets its kind's
// defaults, which are not required (a host that cannot make cgroups runs
// the plugin without them); one it sets is required, 0 turns it off.
func TestPluginLimitsPerKind(t *testing.T) {
	cases := []struct {
		p    config.Plugin
		want pluginhost.Limits
	}{
		{config.Plugin{Kind: handshake.KindAuditSink, MemoryMaxBytes: -1, PidsMax: -1}, pluginhost.Limits{MemoryBytes: DefaultPluginMemoryBytes, Pids: DefaultPluginPids}},
		{config.Plugin{Kind: handshake.KindModelLoader, MemoryMaxBytes: -1, PidsMax: -1}, pluginhost.Limits{MemoryBytes: DefaultPluginMemoryBytes, Pids: DefaultPluginPids}},
		{config.Plugin{Kind: handshake.KindVramBackend, MemoryMaxBytes: -1, PidsMax: -1}, pluginhost.Limits{Pids: DefaultPluginPids}},
		{config.Plugin{Kind: handshake.KindAuditSink, MemoryMaxBytes: 64 << 20, PidsMax: -1}, pluginhost.Limits{MemoryBytes: 64 << 20, Pids: DefaultPluginPids, Required: true}},
		{config.Plugin{Kind: handshake.KindAuditSink, MemoryMaxBytes: 0, PidsMax: 0}, pluginhost.Limits{}},
		{config.Plugin{Kind: handshake.KindVramBackend, MemoryMaxBytes: -1, PidsMax: 32}, pluginhost.Limits{Pids: 32, Required: true}},
	}
	for _, c := range cases {
		if got := SpecOf(&c.p).Limits; got != c.want {
			t.Errorf("%s memory_max_bytes %d pids_max %d: %+v, want %+v", c.p.Kind, c.p.MemoryMaxBytes, c.p.PidsMax, got, c.want)
		}
	}
}
