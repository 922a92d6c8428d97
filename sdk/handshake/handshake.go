// Package handshake holds what the host and every plugin must agree on before
// they talk: the go-plugin handshake, the protocol version and the names under
// which each plugin kind is served.
package handshake

import plugin "github.com/hashicorp/go-plugin"

// ProtocolVersion is the plugin protocol this SDK speaks. A bump keeps the
// previous version's PluginSet served next to the new one so that old plugins
// keep working with a new host and the reverse.
const ProtocolVersion = 1

// Plugin kinds, as served in a go-plugin PluginSet.
const (
	KindAuditSink   = "audit_sink"
	KindModelLoader = "model_loader"
	KindVramBackend = "vram_backend"
)

// Config is the go-plugin handshake. The magic cookie only stops a plugin
// binary from being run by hand by mistake; AutoMTLS and the configured
// sha256 of the binary are what make the connection trustworthy.
var Config = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "VRAMWARD_PLUGIN_MAGIC_COOKIE",
	MagicCookieValue: "4c1d9a0f6e2b45d7b3a8c9e1f0d27a65",
}

// WindowBytes is the HTTP/2 flow-control window both ends of a plugin
// connection use, per stream and per connection. A window set by hand
// turns off gRPC's bandwidth estimation, whose pings answer every data
// frame with another round trip between the two processes: on the
// CRITICAL path that was a tenth of an emit. A delivery is at most
// sixteen batches of a few hundred KiB, so the window never stalls it.
const WindowBytes = 4 << 20
