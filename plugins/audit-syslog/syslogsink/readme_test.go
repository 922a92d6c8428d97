package syslogsink

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// TestReadmeMatchesSchema: the key table names exactly the schema's
// attributes, and the example's config block decodes against it.
func TestReadmeMatchesSchema(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	var documented, keys []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\| (string|int|duration)").FindAllStringSubmatch(doc, -1) {
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
	content, _, _ := file.Body.PartialContent(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "audit"}}})
	sinks, _, _ := content.Blocks[0].Body.PartialContent(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "sink", LabelNames: []string{"name"}}}})
	cfg, _, _ := sinks.Blocks[0].Body.PartialContent(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "config"}}})
	vals, diags := Schema.DecodeHCL(cfg.Blocks[0].Body, nil)
	if diags.HasErrors() {
		t.Fatalf("README example does not decode: %v", diags)
	}
	if vals.String("transport") != "tls" || vals.Int("max_message_bytes") != DefaultMaxMessageBytes {
		t.Errorf("decoded %s", vals.JSON())
	}
}
