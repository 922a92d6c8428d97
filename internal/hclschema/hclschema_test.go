package hclschema

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/vramward/vramward/sdk/schema"
)

var testSchema = schema.Schema{
	{Name: "path", Type: schema.String, Required: true},
	{Name: "size", Type: schema.Int, Default: int64(10)},
	{Name: "on", Type: schema.Bool},
	{Name: "every", Type: schema.Duration, Default: time.Second},
	{Name: "roots", Type: schema.StringList},
}

func TestDecodeHCLPointsAtValues(t *testing.T) {
	// HCL's usual conversion turns a number into a string; the reverse is
	// refused, since "10" for a count is more likely a mistake.
	src := "path = 3\nsize = \"10\"\nevery = \"x\"\nroots = [\"a\", null]\nextra = 1\n"
	f, diags := hclsyntax.ParseConfig([]byte(src), "c.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	_, diags = Decode(testSchema, f.Body, nil)
	var got []string
	for _, d := range diags {
		got = append(got, d.Subject.String()+" "+d.Summary)
	}
	want := []string{
		`c.hcl:5,1-6 Unsupported argument`,
		`c.hcl:2,8-12 Invalid value for "size"`,
		`c.hcl:3,9-12 Invalid value for "every"`,
		`c.hcl:4,9-20 Invalid value for "roots"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("diagnostics:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestDecodeAppliesTheSchema(t *testing.T) {
	f, diags := hclsyntax.ParseConfig([]byte("path = \"/a\"\nevery = \"2m\"\n"), "c.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	v, diags := Decode(testSchema, f.Body, nil)
	if diags.HasErrors() || v.String("path") != "/a" || v.Int("size") != 10 || v.Duration("every") != 2*time.Minute {
		t.Fatalf("%v %s", diags, v.JSON())
	}
	if _, diags := Decode(testSchema, nil, nil); !diags.HasErrors() {
		t.Fatal("a missing required key passed")
	}
}
