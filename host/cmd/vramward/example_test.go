package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"testing"

	"github.com/vramward/vramward/host/config"
	"github.com/vramward/vramward/sdk/gguftest"
)

// The example's model is the GGUF writer's Small file, and the example
// config pins its digest: `make run` checks a real file end to end.
func TestExampleModel(t *testing.T) {
	b, err := os.ReadFile("../../../examples/models/tiny.gguf")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, gguftest.Small().Bytes()) {
		t.Fatal("examples/models/tiny.gguf differs from gguftest.Small(); regenerate it")
	}
	cfg, _, diags := config.Load("../../../examples/config.hcl")
	if diags.HasErrors() {
		t.Fatal(config.Format(diags))
	}
	sum := sha256.Sum256(b)
	if len(cfg.Models) != 1 || cfg.Models[0].SHA256 != hex.EncodeToString(sum[:]) || cfg.Loader == nil {
		t.Fatalf("example config: loader %v, models %+v", cfg.Loader, cfg.Models)
	}
}
