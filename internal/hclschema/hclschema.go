// Package hclschema decodes a plugin's `config {}` block, written in HCL,
// against the schema the plugin publishes, with every diagnostic at the
// offending key or value. The host uses it for its config file, and the
// shipped plugins' tests for their README examples; it lives outside the SDK
// so that plugin authors do not pull HCL and cty in.
package hclschema

import (
	"encoding/json"
	"fmt"
	"math/big"
	"sort"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"

	"github.com/vramward/vramward/sdk/schema"
)

// Decode decodes an HCL body (a plugin's `config {}` block) against the
// schema. Every diagnostic carries the source range of the offending key or
// value; the values then go through the schema's own JSON decoding, so
// defaults and checks are the plugin's. A nil body decodes as an empty
// block.
func Decode(s schema.Schema, body hcl.Body, ctx *hcl.EvalContext) (schema.Values, hcl.Diagnostics) {
	vals := make(map[string]any, len(s))
	var diags hcl.Diagnostics
	if body != nil {
		bs := &hcl.BodySchema{}
		for _, a := range s {
			bs.Attributes = append(bs.Attributes, hcl.AttributeSchema{Name: a.Name, Required: a.Required})
		}
		content, cdiags := body.Content(bs)
		diags = append(diags, cdiags...)
		// In source order, so diagnostics come out the same way every time.
		given := make([]*hcl.Attribute, 0, len(content.Attributes))
		for _, attr := range content.Attributes {
			given = append(given, attr)
		}
		sort.Slice(given, func(i, j int) bool { return given[i].Range.Start.Byte < given[j].Range.Start.Byte })
		for _, attr := range given {
			name := attr.Name
			a, _ := s.Lookup(name)
			v, d := decodeExpr(a, attr.Expr, ctx)
			diags = append(diags, d...)
			if !d.HasErrors() {
				vals[name] = v
			}
		}
	} else {
		for _, a := range s {
			if a.Required {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Missing required argument",
					Detail:   fmt.Sprintf("The argument %q is required, but no definition was found.", a.Name),
				})
			}
		}
	}
	if diags.HasErrors() {
		return schema.Values{}, diags
	}
	for k, v := range vals {
		if d, ok := v.(time.Duration); ok {
			vals[k] = d.String()
		}
	}
	raw, err := json.Marshal(vals)
	if err != nil {
		return schema.Values{}, append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot encode the config block", Detail: err.Error()})
	}
	out, err := s.Decode(raw)
	if err != nil {
		return schema.Values{}, append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid config block", Detail: err.Error(), Subject: rangeOf(body)})
	}
	return out, diags
}

func rangeOf(body hcl.Body) *hcl.Range {
	if body == nil {
		return nil
	}
	if r, ok := body.(interface{ Range() hcl.Range }); ok {
		rg := r.Range()
		return &rg
	}
	return nil
}

func decodeExpr(a schema.Attribute, expr hcl.Expression, ctx *hcl.EvalContext) (any, hcl.Diagnostics) {
	val, diags := expr.Value(ctx)
	if diags.HasErrors() {
		return nil, diags
	}
	bad := func(detail string) hcl.Diagnostics {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("Invalid value for %q", a.Name),
			Detail:   detail,
			Subject:  expr.Range().Ptr(),
		}}
	}
	if val.IsNull() {
		return nil, bad("The value must not be null.")
	}
	if !val.IsWhollyKnown() {
		return nil, bad("The value must be known when the config is read.")
	}
	want := map[schema.Type]cty.Type{
		schema.String: cty.String, schema.Int: cty.Number, schema.Bool: cty.Bool, schema.Duration: cty.String,
		schema.StringList: cty.List(cty.String),
	}[a.Type]
	conv, err := convert.Convert(val, want)
	if err != nil || (a.Type != schema.String && a.Type != schema.Duration && val.Type() == cty.String) {
		// HCL would happily turn "10" into 10; a typed schema should not.
		return nil, bad(fmt.Sprintf("Want %s, got %s.", a.Type, val.Type().FriendlyName()))
	}
	switch a.Type {
	case schema.String:
		return conv.AsString(), nil
	case schema.Bool:
		return conv.True(), nil
	case schema.Int:
		bf := conv.AsBigFloat()
		if !bf.IsInt() {
			return nil, bad(fmt.Sprintf("Want a whole number, got %s.", bf.Text('g', -1)))
		}
		i, acc := bf.Int64()
		if acc != big.Exact {
			return nil, bad(fmt.Sprintf("%s does not fit in a 64-bit integer.", bf.Text('g', -1)))
		}
		return i, nil
	case schema.Duration:
		d, err := time.ParseDuration(conv.AsString())
		if err != nil || d < 0 {
			return nil, bad(fmt.Sprintf("Want a duration such as \"500ms\" or \"15m\", got %q.", conv.AsString()))
		}
		return d, nil
	case schema.StringList:
		var out []string
		for it := conv.ElementIterator(); it.Next(); {
			_, e := it.Element()
			if e.IsNull() {
				return nil, bad("List elements must not be null.")
			}
			out = append(out, e.AsString())
		}
		return out, nil
	}
	return nil, bad("Unknown attribute type.")
}
