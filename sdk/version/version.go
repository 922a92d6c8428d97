// Package version reports the build's version and the SDK's own version.
package version

// Version is the release this binary was built from; the Makefile sets it
// with -ldflags "-X github.com/vramward/vramward/sdk/version.Version=...".
var Version = "dev"

// SDK is the version of the plugin SDK. It changes when the SDK's public
// API or wire contract changes, independently of releases.
const SDK = "1.0.0"
