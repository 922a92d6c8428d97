package config

import (
	"encoding/hex"
	"fmt"
	"math/big"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// attrs decodes the attributes of one block, collecting every problem as a
// diagnostic at the attribute's source range.
type attrs struct {
	m     hcl.Attributes
	ctx   *hcl.EvalContext
	diags *hcl.Diagnostics
}

func (a attrs) errorf(rng hcl.Range, summary, format string, args ...any) {
	*a.diags = append(*a.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  rng.Ptr(),
	})
}

// value evaluates an attribute and converts it to want, or reports why not.
func (a attrs) value(name string, want cty.Type) (cty.Value, *hcl.Attribute, bool) {
	attr, ok := a.m[name]
	if !ok {
		return cty.NilVal, nil, false
	}
	v, d := attr.Expr.Value(a.ctx)
	*a.diags = append(*a.diags, d...)
	if d.HasErrors() {
		return cty.NilVal, attr, false
	}
	if v.IsNull() {
		a.errorf(attr.Expr.Range(), fmt.Sprintf("Invalid value for %q", name), "The value must not be null.")
		return cty.NilVal, attr, false
	}
	if !v.IsWhollyKnown() {
		a.errorf(attr.Expr.Range(), fmt.Sprintf("Invalid value for %q", name), "The value must be known when the config is read.")
		return cty.NilVal, attr, false
	}
	c, err := convert.Convert(v, want)
	if err != nil || (want != cty.String && v.Type() == cty.String) {
		a.errorf(attr.Expr.Range(), fmt.Sprintf("Invalid value for %q", name), "Want %s, got %s.", want.FriendlyName(), v.Type().FriendlyName())
		return cty.NilVal, attr, false
	}
	return c, attr, true
}

func (a attrs) str(name, def string) string {
	v, _, ok := a.value(name, cty.String)
	if !ok {
		return def
	}
	return v.AsString()
}

// nonEmpty is str for attributes that must not be "" when given.
func (a attrs) boolean(name string, def bool) bool {
	v, _, ok := a.value(name, cty.Bool)
	if !ok {
		return def
	}
	return v.True()
}

func (a attrs) nonEmpty(name, def string) string {
	v, attr, ok := a.value(name, cty.String)
	if !ok {
		return def
	}
	if strings.TrimSpace(v.AsString()) == "" {
		a.errorf(attr.Expr.Range(), fmt.Sprintf("Invalid value for %q", name), "The value must not be empty.")
		return def
	}
	return v.AsString()
}

func (a attrs) integer(name string, def, lo, hi int64) int64 {
	v, attr, ok := a.value(name, cty.Number)
	if !ok {
		return def
	}
	bf := v.AsBigFloat()
	i, acc := bf.Int64()
	if !bf.IsInt() || acc != big.Exact || i < lo || i > hi {
		a.errorf(attr.Expr.Range(), fmt.Sprintf("Invalid value for %q", name), "Want a whole number from %d to %d, got %s.", lo, hi, bf.Text('g', -1))
		return def
	}
	return i
}

// limit is an optional resource limit: -1 when absent, 0 for none, else a
// whole number from lo to hi.
func (a attrs) limit(name string, lo, hi int64) int64 {
	v, attr, ok := a.value(name, cty.Number)
	if !ok {
		return -1
	}
	bf := v.AsBigFloat()
	i, acc := bf.Int64()
	if !bf.IsInt() || acc != big.Exact || i != 0 && (i < lo || i > hi) {
		a.errorf(attr.Expr.Range(), fmt.Sprintf("Invalid value for %q", name), "Want 0 (no limit) or a whole number from %d to %d, got %s.", lo, hi, bf.Text('g', -1))
		return -1
	}
	return i
}

func (a attrs) duration(name string, def, lo time.Duration) time.Duration {
	v, attr, ok := a.value(name, cty.String)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v.AsString())
	if err != nil {
		a.errorf(attr.Expr.Range(), fmt.Sprintf("Invalid duration for %q", name), "Want a duration such as \"500ms\" or \"15m\", got %q.", v.AsString())
		return def
	}
	if d < lo {
		a.errorf(attr.Expr.Range(), fmt.Sprintf("Invalid duration for %q", name), "The duration must be at least %s, got %s.", lo, d)
		return def
	}
	return d
}

func (a attrs) oneOf(name, def string, allowed ...string) string {
	v, attr, ok := a.value(name, cty.String)
	if !ok {
		return def
	}
	for _, s := range allowed {
		if v.AsString() == s {
			return s
		}
	}
	a.errorf(attr.Expr.Range(), fmt.Sprintf("Invalid value for %q", name), "Want one of %s, got %q.", quoteAll(allowed), v.AsString())
	return def
}

func (a attrs) strList(name string) []string {
	v, attr, ok := a.value(name, cty.List(cty.String))
	if !ok {
		return nil
	}
	var out []string
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if e.IsNull() {
			a.errorf(attr.Expr.Range(), fmt.Sprintf("Invalid value for %q", name), "List elements must not be null.")
			return nil
		}
		out = append(out, e.AsString())
	}
	return out
}

// sha256 reads an optional hex SHA-256 digest, lower-cased.
func (a attrs) sha256(name string) string {
	v, attr, ok := a.value(name, cty.String)
	if !ok {
		return ""
	}
	s := strings.ToLower(strings.TrimSpace(v.AsString()))
	if b, err := hex.DecodeString(s); err != nil || len(b) != 32 {
		a.errorf(attr.Expr.Range(), fmt.Sprintf("Invalid value for %q", name), "Want a SHA-256 digest as 64 hex digits, got %q.", v.AsString())
		return ""
	}
	return s
}

func (a attrs) rangeOf(name string, fallback hcl.Range) hcl.Range {
	if attr, ok := a.m[name]; ok {
		return attr.Expr.Range()
	}
	return fallback
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// user looks up a user by name or uid on this host.
func (a attrs) user(name string) *PluginUser {
	v, attr, ok := a.value(name, cty.String)
	if !ok {
		return nil
	}
	want := strings.TrimSpace(v.AsString())
	lookup := user.Lookup
	if _, err := strconv.Atoi(want); err == nil {
		lookup = user.LookupId
	}
	u, err := lookup(want)
	if err != nil {
		a.errorf(attr.Expr.Range(), fmt.Sprintf("Invalid value for %q", name), "No user %q on this host: %v.", v.AsString(), err)
		return nil
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		a.errorf(attr.Expr.Range(), fmt.Sprintf("Invalid value for %q", name), "User %q has no numeric uid and gid (%s, %s).", v.AsString(), u.Uid, u.Gid)
		return nil
	}
	if uid == 0 {
		a.errorf(attr.Expr.Range(), fmt.Sprintf("Invalid value for %q", name), "User %q is root: leave user out to run the plugin as the host's user.", v.AsString())
		return nil
	}
	return &PluginUser{Name: u.Username, UID: uid, GID: gid}
}
