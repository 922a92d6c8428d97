package ggufloader

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/vramward/vramward/plugins/loader-gguf/gguf"
)

func readme(t *testing.T) string {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReadmeMatchesSchema: the key table names exactly the schema's
// attributes, and the example's config block decodes against it.
func TestReadmeMatchesSchema(t *testing.T) {
	doc := readme(t)
	var documented, keys []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\| (list|int|string)").FindAllStringSubmatch(doc, -1) {
		documented = append(documented, m[1])
	}
	for _, a := range Schema {
		keys = append(keys, a.Name)
	}
	sort.Strings(documented)
	sort.Strings(keys)
	if strings.Join(documented, " ") != strings.Join(keys, " ") {
		t.Errorf("README keys %v, schema %v", documented, keys)
	}
	start := strings.Index(doc, "```hcl\n")
	end := strings.Index(doc[start+7:], "```")
	file, diags := hclsyntax.ParseConfig([]byte(doc[start+7:start+7+end]), "README.md", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	content, _, _ := file.Body.PartialContent(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "loader"}}})
	cfg, _, _ := content.Blocks[0].Body.PartialContent(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "config"}}})
	vals, diags := Schema.DecodeHCL(cfg.Blocks[0].Body, nil)
	if diags.HasErrors() {
		t.Fatalf("README example does not decode: %v", diags)
	}
	if got := vals.StringList("allowed_roots"); len(got) != 1 || got[0] != "/srv/models" {
		t.Errorf("decoded %s", vals.JSON())
	}
}

// TestReadmeNamesEveryFormatReason: each reason the reader can give is
// documented, and nothing else is.
func TestReadmeNamesEveryFormatReason(t *testing.T) {
	doc := readme(t)
	sec := doc[strings.Index(doc, "## GGUF checks"):]
	for _, r := range gguf.Reasons() {
		if !strings.Contains(sec, "`"+string(r)+"`") {
			t.Errorf("README does not document %s", r)
		}
	}
}
