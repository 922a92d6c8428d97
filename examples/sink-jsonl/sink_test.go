package main

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audittest"
	"github.com/vramward/vramward/sdk/plugintest"
)

var binary string

func TestMain(m *testing.M) {
	plugintest.Main(m, func(dir string) (err error) {
		binary, err = plugintest.Build(dir, ".", "sink-jsonl")
		return err
	})
}

func newConfig(t *testing.T) []byte {
	return []byte(fmt.Sprintf(`{"path": %q}`, filepath.Join(t.TempDir(), "audit.jsonl")))
}

// The example passes the whole harness, in this process and as the plugin
// binary the host would run.
func TestConformance(t *testing.T) {
	audittest.Run(t, func(t *testing.T) (audit.Sink, []byte) { return &sink{}, newConfig(t) }, audittest.WithReadBack(audittest.JSONLinesFile("path")))
}

func TestConformanceBinary(t *testing.T) {
	audittest.RunBinary(t, binary, newConfig, audittest.WithReadBack(audittest.JSONLinesFile("path")))
}
