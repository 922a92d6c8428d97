package core

import (
	"testing"

	"github.com/vramward/vramward/sdk/plugintest"
)

func TestReadmeMatchesSchema(t *testing.T) {
	plugintest.ReadmeConfig(t, "../README.md", Schema, "vram", "config")
}
