package filesink

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// TestReadmeMatchesSchema: the README's key table names exactly the schema's
// attributes, and its example block decodes against the schema.
func TestReadmeMatchesSchema(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	var documented []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|").FindAllStringSubmatch(doc, -1) {
		documented = append(documented, m[1])
	}
	var keys []string
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
	if start < 0 || end < 0 {
		t.Fatal("README has no hcl example")
	}
	file, diags := hclsyntax.ParseConfig([]byte(doc[start+7:start+7+end]), "README.md", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	content, _, diags := file.Body.PartialContent(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "audit"}}})
	if diags.HasErrors() || len(content.Blocks) != 1 {
		t.Fatalf("example: %v", diags)
	}
	sinks, _, _ := content.Blocks[0].Body.PartialContent(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "sink", LabelNames: []string{"name"}}}})
	cfg, _, _ := sinks.Blocks[0].Body.PartialContent(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "config"}}})
	if len(cfg.Blocks) != 1 {
		t.Fatal("example sink has no config block")
	}
	vals, diags := Schema.DecodeHCL(cfg.Blocks[0].Body, nil)
	if diags.HasErrors() {
		t.Fatalf("README example does not decode: %v", diags)
	}
	if vals.String("path") != "/var/log/vramward/audit.log" || vals.Int("max_files") != DefaultMaxFiles {
		t.Errorf("decoded %s", vals.JSON())
	}
}
