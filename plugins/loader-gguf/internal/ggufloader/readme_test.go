package ggufloader

import (
	"os"
	"strings"
	"testing"

	"github.com/vramward/vramward/internal/readmetest"
	"github.com/vramward/vramward/plugins/loader-gguf/internal/gguf"
)

func TestReadmeMatchesSchema(t *testing.T) {
	vals := readmetest.ReadmeConfig(t, "../../README.md", Schema, "loader", "config")
	if got := vals.StringList("allowed_roots"); len(got) != 1 || got[0] != "/srv/models" {
		t.Errorf("decoded %s", vals.JSON())
	}
}

// TestReadmeNamesEveryFormatReason: each reason the reader can give is
// documented.
func TestReadmeNamesEveryFormatReason(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	sec := doc[strings.Index(doc, "## GGUF checks"):]
	for _, r := range gguf.Reasons() {
		if !strings.Contains(sec, "`"+string(r)+"`") {
			t.Errorf("README does not document %s", r)
		}
	}
}
