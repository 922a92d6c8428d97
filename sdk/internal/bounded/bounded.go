// Package bounded caps what a plugin says about itself, on the host's side
// of the RPC: the gRPC message limit bounds a whole answer, these bound
// each field, so that nothing a plugin names ends up as megabytes in a log
// line, a metric label or an audit record.
package bounded

import "fmt"

// Caps of the fields of an Info answer.
const (
	MaxNameBytes    = 128
	MaxVersionBytes = 128
)

// Info checks a plugin's name and version.
func Info(name, version string) error {
	if len(name) > MaxNameBytes {
		return fmt.Errorf("the plugin's name is %d bytes long; at most %d are accepted", len(name), MaxNameBytes)
	}
	if len(version) > MaxVersionBytes {
		return fmt.Errorf("the plugin's version is %d bytes long; at most %d are accepted", len(version), MaxVersionBytes)
	}
	return nil
}
