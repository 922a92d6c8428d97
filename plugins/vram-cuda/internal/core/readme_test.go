package core

import (
	"testing"

	"github.com/vramward/vramward/internal/readmetest"
)

func TestReadmeMatchesSchema(t *testing.T) {
	readmetest.ReadmeConfig(t, "../../README.md", Schema, "vram", "config")
}
