// Package readmetest checks a shipped plugin's README against its config
// schema, with the decoder the host uses for its config file.
package readmetest

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/vramward/vramward/internal/hclschema"
	"github.com/vramward/vramward/sdk/schema"
)

var keyRowRE = regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\| (string|int|bool|duration|list\\(string\\)) \\|")

// ReadmeConfig checks a plugin's README against its config schema, so the
// documentation cannot drift from the code: the rows of its key table
// ("| `key` | type |") name exactly the schema's attributes, and the
// config block of its first hcl example, found by the block types from the
// outside in (for a sink: "audit", "sink", "config"), decodes against the
// schema. It returns what the example decodes to.
func ReadmeConfig(t testing.TB, readme string, sch schema.Schema, blocks ...string) schema.Values {
	t.Helper()
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	var documented, keys []string
	for _, m := range keyRowRE.FindAllStringSubmatch(doc, -1) {
		documented = append(documented, m[1])
	}
	for _, a := range sch {
		keys = append(keys, a.Name)
	}
	sort.Strings(documented)
	sort.Strings(keys)
	if strings.Join(documented, " ") != strings.Join(keys, " ") {
		t.Errorf("%s documents keys %v; the schema has %v", readme, documented, keys)
	}
	start := strings.Index(doc, "```hcl\n")
	if start < 0 {
		t.Fatalf("%s has no hcl example", readme)
	}
	body := doc[start+7:]
	body = body[:strings.Index(body, "```")]
	file, diags := hclsyntax.ParseConfig([]byte(body), readme, hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("%s example: %v", readme, diags)
	}
	cur := file.Body.(*hclsyntax.Body)
	for _, typ := range blocks {
		var next *hclsyntax.Body
		for _, blk := range cur.Blocks {
			if blk.Type == typ {
				next = blk.Body
				break
			}
		}
		if next == nil {
			t.Fatalf("%s example has no %q block at %v", readme, typ, blocks)
		}
		cur = next
	}
	vals, diags := hclschema.Decode(sch, cur, nil)
	if diags.HasErrors() {
		t.Fatalf("%s example does not decode: %v", readme, diags)
	}
	return vals
}
