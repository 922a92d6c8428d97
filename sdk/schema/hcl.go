package schema

import (
	"fmt"
	"math/big"
	"sort"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// DecodeHCL decodes an HCL body (a plugin's `config {}` block) against the
// schema. Every diagnostic carries the source range of the offending key or
// value. A nil body decodes as an empty block.
func (s Schema) DecodeHCL(body hcl.Body, ctx *hcl.EvalContext) (Values, hcl.Diagnostics) {
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
			v, d := a.decodeExpr(attr.Expr, ctx)
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
	for _, a := range s {
		if _, ok := vals[a.Name]; !ok && a.Default != nil {
			d, _ := a.Type.coerce(a.Default)
			vals[a.Name] = d
		}
	}
	if diags.HasErrors() {
		return Values{}, diags
	}
	return Values{m: vals}, diags
}

func (a Attribute) decodeExpr(expr hcl.Expression, ctx *hcl.EvalContext) (any, hcl.Diagnostics) {
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
	want := map[Type]cty.Type{
		String: cty.String, Int: cty.Number, Bool: cty.Bool, Duration: cty.String,
		StringList: cty.List(cty.String),
	}[a.Type]
	conv, err := convert.Convert(val, want)
	if err != nil || (a.Type != String && a.Type != Duration && val.Type() == cty.String) {
		// HCL would happily turn "10" into 10; a typed schema should not.
		return nil, bad(fmt.Sprintf("Want %s, got %s.", a.Type, val.Type().FriendlyName()))
	}
	switch a.Type {
	case String:
		return conv.AsString(), nil
	case Bool:
		return conv.True(), nil
	case Int:
		bf := conv.AsBigFloat()
		if !bf.IsInt() {
			return nil, bad(fmt.Sprintf("Want a whole number, got %s.", bf.Text('g', -1)))
		}
		i, acc := bf.Int64()
		if acc != big.Exact {
			return nil, bad(fmt.Sprintf("%s does not fit in a 64-bit integer.", bf.Text('g', -1)))
		}
		return i, nil
	case Duration:
		d, err := time.ParseDuration(conv.AsString())
		if err != nil || d < 0 {
			return nil, bad(fmt.Sprintf("Want a duration such as \"500ms\" or \"15m\", got %q.", conv.AsString()))
		}
		return d, nil
	case StringList:
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
