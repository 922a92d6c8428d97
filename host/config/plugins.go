package config

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/vramward/vramward/internal/hclschema"
	"github.com/vramward/vramward/sdk/schema"
)

// Uses lists every block that runs a plugin with a config block: the
// sinks, the loader, the VRAM backend.
func (c *Config) Uses() []*PluginUse {
	uses := append([]*PluginUse(nil), c.Audit.Sinks...)
	if c.Loader != nil {
		uses = append(uses, c.Loader)
	}
	if c.Vram != nil {
		uses = append(uses, c.Vram)
	}
	return uses
}

// DecodePluginConfigs decodes each sink's and the loader's config block
// against the schema its plugin published (keyed by plugin name), filling
// ConfigJSON. A wrong key or type is reported at its position, like a host
// key.
func (c *Config) DecodePluginConfigs(schemas map[string]schema.Schema) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, u := range c.Uses() {
		if sch, ok := schemas[u.Plugin]; ok {
			diags = append(diags, c.DecodeUseConfig(u, sch)...)
		}
	}
	sortDiags(diags)
	return diags
}

// DecodeUseConfig decodes one block's config block against sch.
func (c *Config) DecodeUseConfig(s *PluginUse, sch schema.Schema) hcl.Diagnostics {
	vals, diags := hclschema.Decode(sch, s.Body, evalContext(c.Dir))
	for _, diag := range diags {
		if diag.Subject == nil {
			diag.Subject = s.DeclRange.Ptr()
		}
		diag.Detail = fmt.Sprintf("%s (%s)", diag.Detail, s.label())
	}
	if diags.HasErrors() {
		return diags
	}
	// Files the plugin will write or read are checked here, before it is
	// configured and by `vramward validate` alike: a directory where a
	// trail file should be is refused at its position, not after retries.
	if errs := sch.CheckPaths(vals); len(errs) > 0 {
		return append(diags, s.FieldDiagnostics(errs)...)
	}
	s.ConfigJSON = vals.JSON()
	return diags
}

// FieldDiagnostics turns the field errors a plugin returned from Configure
// into diagnostics at the attributes' positions in the block's config block.
func (s *PluginUse) FieldDiagnostics(fields []*schema.FieldError) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, f := range fields {
		rng := s.DeclRange
		if body, ok := s.Body.(*hclsyntax.Body); ok {
			if attr, ok := body.Attributes[f.Field]; ok {
				rng = attr.Expr.Range()
			}
		}
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("Invalid value for %q", f.Field),
			Detail:   fmt.Sprintf("%s (%s)", f.Msg, s.label()),
			Subject:  rng.Ptr(),
		})
	}
	return diags
}

// Format writes diagnostics one a line as "file:line:col: severity: summary:
// detail", the form tests compare and log lines carry.
func Format(diags hcl.Diagnostics) string {
	out := ""
	for _, d := range diags {
		sev := "error"
		if d.Severity == hcl.DiagWarning {
			sev = "warning"
		}
		where := "(config)"
		if d.Subject != nil {
			where = fmt.Sprintf("%s:%d:%d", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column)
		}
		out += fmt.Sprintf("%s: %s: %s: %s\n", where, sev, d.Summary, d.Detail)
	}
	return out
}
