package syslogsink

import (
	"testing"

	"github.com/vramward/vramward/internal/readmetest"
)

func TestReadmeMatchesSchema(t *testing.T) {
	vals := readmetest.ReadmeConfig(t, "../../README.md", Schema, "audit", "sink", "config")
	if vals.String("transport") != "tls" || vals.Int("max_message_bytes") != DefaultMaxMessageBytes {
		t.Errorf("decoded %s", vals.JSON())
	}
}
