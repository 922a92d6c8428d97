// Package hexdigest reads a hex SHA-256 given by a person or a config.
package hexdigest

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// Normalize checks a hex SHA-256 (either case, surrounding space allowed)
// and returns it in lower case.
func Normalize(hexDigest string) (string, error) {
	d := strings.ToLower(strings.TrimSpace(hexDigest))
	if len(d) != 64 {
		return "", fmt.Errorf("expected SHA-256 must be 64 hex digits, got %d characters", len(d))
	}
	if _, err := hex.DecodeString(d); err != nil {
		return "", fmt.Errorf("expected SHA-256 %q is not hex", hexDigest)
	}
	return d, nil
}
