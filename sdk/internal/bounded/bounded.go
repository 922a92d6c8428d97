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

// MaxTextBytes caps one string a plugin sends in an error's details;
// MaxListItems caps a list of them.
const (
	MaxTextBytes = 4096
	MaxListItems = 64
)

// Text cuts s to MaxTextBytes, saying so.
func Text(s string) string {
	if len(s) <= MaxTextBytes {
		return s
	}
	return s[:MaxTextBytes] + fmt.Sprintf("…[%d more bytes cut by the host]", len(s)-MaxTextBytes)
}

// List caps a list of strings in count and each item's length.
func List(l []string) []string {
	if len(l) > MaxListItems {
		l = l[:MaxListItems]
	}
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = Text(s)
	}
	return out
}
