package filesink

import (
	"testing"

	"github.com/vramward/vramward/internal/readmetest"
)

// TestReadmeMatchesSchema: the README's key table names exactly the schema's
// attributes, and its example block decodes against the schema.
func TestReadmeMatchesSchema(t *testing.T) {
	vals := readmetest.ReadmeConfig(t, "../README.md", Schema, "audit", "sink", "config")
	if vals.String("path") != "/var/log/vramward/audit.log" || vals.Int("max_files") != DefaultMaxFiles {
		t.Errorf("decoded %s", vals.JSON())
	}
}
