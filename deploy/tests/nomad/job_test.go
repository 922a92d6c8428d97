// Package nomad checks the shipped Nomad job: it decodes into the Job types
// of github.com/hashicorp/nomad/api (MPL-licensed; the main nomad module is
// not open source and is not used) through their hcl tags, an unknown key
// or block an error, and holds what a GPU node's host needs. A module of its
// own, so that the host does not pull in Nomad's API.
package nomad

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/nomad/api"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/gocty"
)

// decodeBody fills the struct v points at from body, by the fields' hcl
// tags as Nomad's API types carry them: ",label", "name,optional",
// "name,block". Anything the body holds that no field names is an error.
// Durations are written as Nomad writes them ("10s").
func decodeBody(body hcl.Body, v reflect.Value) hcl.Diagnostics {
	t := v.Type()
	schema := &hcl.BodySchema{}
	attrs, blocks := map[string]int{}, map[string]int{}
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("hcl")
		name, kind, _ := strings.Cut(tag, ",")
		switch kind {
		case "optional":
			schema.Attributes = append(schema.Attributes, hcl.AttributeSchema{Name: name})
			attrs[name] = i
		case "block":
			schema.Blocks = append(schema.Blocks, hcl.BlockHeaderSchema{Type: name, LabelNames: labelsOf(t.Field(i).Type)})
			blocks[name] = i
		}
	}
	content, diags := body.Content(schema)
	for name, a := range content.Attributes {
		val, d := a.Expr.Value(nil)
		diags = append(diags, d...)
		if !d.HasErrors() {
			if err := setValue(v.Field(attrs[name]), val); err != nil {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Bad value for " + name, Detail: err.Error(), Subject: a.Range.Ptr()})
			}
		}
	}
	for _, b := range content.Blocks {
		diags = append(diags, decodeBlock(b, v.Field(blocks[b.Type]))...)
	}
	return diags
}

// labelsOf names the labels a block type takes (its ",label" fields).
func labelsOf(t reflect.Type) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	var out []string
	if t.Kind() == reflect.Struct {
		for i := 0; i < t.NumField(); i++ {
			if _, kind, _ := strings.Cut(t.Field(i).Tag.Get("hcl"), ","); kind == "label" {
				out = append(out, t.Field(i).Name)
			}
		}
	}
	return out
}

func decodeBlock(b *hcl.Block, f reflect.Value) hcl.Diagnostics {
	switch {
	case f.Kind() == reflect.Map && f.Type().Elem().Kind() != reflect.Pointer:
		// meta, env, config: attributes of any name.
		attrs, diags := b.Body.JustAttributes()
		if f.IsNil() {
			f.Set(reflect.MakeMap(f.Type()))
		}
		for name, a := range attrs {
			val, d := a.Expr.Value(nil)
			diags = append(diags, d...)
			if d.HasErrors() {
				continue
			}
			e := reflect.New(f.Type().Elem()).Elem()
			if err := setValue(e, val); err != nil {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Bad value for " + name, Detail: err.Error(), Subject: a.Range.Ptr()})
				continue
			}
			f.SetMapIndex(reflect.ValueOf(name), e)
		}
		return diags
	case f.Kind() == reflect.Map: // volume "name" {}: a map of labelled blocks
		if f.IsNil() {
			f.Set(reflect.MakeMap(f.Type()))
		}
		e := reflect.New(f.Type().Elem().Elem())
		diags := fill(b, e.Elem())
		f.SetMapIndex(reflect.ValueOf(b.Labels[0]), e)
		return diags
	case f.Kind() == reflect.Slice:
		e := reflect.New(f.Type().Elem())
		target := e.Elem()
		if target.Kind() == reflect.Pointer {
			target.Set(reflect.New(target.Type().Elem()))
			target = target.Elem()
		}
		diags := fill(b, target)
		f.Set(reflect.Append(f, e.Elem()))
		return diags
	case f.Kind() == reflect.Pointer:
		f.Set(reflect.New(f.Type().Elem()))
		return fill(b, f.Elem())
	}
	return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Unsupported block " + b.Type, Subject: b.DefRange.Ptr()}}
}

// fill sets a block's labels, then decodes its body.
func fill(b *hcl.Block, v reflect.Value) hcl.Diagnostics {
	n := 0
	for i := 0; i < v.NumField(); i++ {
		if _, kind, _ := strings.Cut(v.Type().Field(i).Tag.Get("hcl"), ","); kind == "label" && n < len(b.Labels) {
			f := v.Field(i)
			if f.Kind() == reflect.Pointer {
				f.Set(reflect.New(f.Type().Elem()))
				f = f.Elem()
			}
			f.SetString(b.Labels[n])
			n++
		}
	}
	return decodeBody(b.Body, v)
}

var durationType = reflect.TypeOf(time.Duration(0))

func setValue(f reflect.Value, val cty.Value) error {
	if f.Kind() == reflect.Pointer {
		f.Set(reflect.New(f.Type().Elem()))
		f = f.Elem()
	}
	if f.Type() == durationType {
		if val.Type() != cty.String {
			return fmt.Errorf("want a duration such as \"10s\"")
		}
		d, err := time.ParseDuration(val.AsString())
		if err != nil {
			return err
		}
		f.SetInt(int64(d))
		return nil
	}
	if f.Kind() == reflect.Interface {
		var s string
		if gocty.FromCtyValue(val, &s) == nil {
			f.Set(reflect.ValueOf(s))
			return nil
		}
		var l []string
		lv, err := convert.Convert(val, cty.List(cty.String))
		if err != nil {
			return err
		}
		if err := gocty.FromCtyValue(lv, &l); err != nil {
			return err
		}
		f.Set(reflect.ValueOf(l))
		return nil
	}
	ty, err := gocty.ImpliedType(f.Addr().Interface())
	if err != nil {
		return err
	}
	if val, err = convert.Convert(val, ty); err != nil {
		return err
	}
	return gocty.FromCtyValue(val, f.Addr().Interface())
}

func loadJob(t *testing.T) *api.Job {
	t.Helper()
	src, err := os.ReadFile("../../nomad/vramward.nomad.hcl")
	if err != nil {
		t.Fatal(err)
	}
	file, diags := hclsyntax.ParseConfig(src, "vramward.nomad.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	content, diags := file.Body.Content(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "job", LabelNames: []string{"name"}}}})
	if diags.HasErrors() || len(content.Blocks) != 1 {
		t.Fatalf("want one job block: %v", diags)
	}
	job := &api.Job{ID: &content.Blocks[0].Labels[0]}
	if diags := decodeBody(content.Blocks[0].Body, reflect.ValueOf(job).Elem()); diags.HasErrors() {
		t.Fatalf("the job does not decode into nomad/api's types:\n%s", diags.Error())
	}
	return job
}

func TestJob(t *testing.T) {
	job := loadJob(t)
	if *job.ID != "vramward" || job.Type == nil || *job.Type != "system" {
		t.Fatalf("job %q type %v: want a system job", *job.ID, job.Type)
	}
	if len(job.TaskGroups) != 1 || len(job.TaskGroups[0].Tasks) != 1 {
		t.Fatal("one group with one task")
	}
	g := job.TaskGroups[0]
	task := g.Tasks[0]
	if task.Resources == nil || len(task.Resources.Devices) != 1 || task.Resources.Devices[0].Name != "nvidia/gpu" {
		t.Error("the task does not ask for an NVIDIA GPU")
	}
	if task.KillTimeout == nil || *task.KillTimeout <= 10*time.Second || task.KillSignal != "SIGTERM" {
		t.Error("the kill timeout does not leave the host its shutdown_timeout")
	}
	var token, config bool
	for _, tpl := range task.Templates {
		switch {
		case *tpl.DestPath == "secrets/token":
			token = strings.Contains(*tpl.EmbeddedTmpl, "nomadVar") && *tpl.Perms == "0400"
		case *tpl.DestPath == "local/vramward.hcl":
			config = strings.Contains(*tpl.EmbeddedTmpl, `token_file = "{{ env "NOMAD_SECRETS_DIR" }}/token"`)
		}
	}
	if !token || !config {
		t.Errorf("the token must come from Nomad variables as a 0400 file the config names (token %v, config %v)", token, config)
	}
	for name := range task.Env {
		if strings.Contains(strings.ToLower(name), "token") {
			t.Error("the token reaches the host through the environment")
		}
	}
	if v := g.Volumes["state"]; v == nil || v.Type != "host" || v.ReadOnly {
		t.Error("the state dir is not a writable host volume: a restart would start a new log")
	}
	if v := g.Volumes["models"]; v == nil || !v.ReadOnly {
		t.Error("the models are writable")
	}
	if len(g.Services) != 1 || len(g.Services[0].Checks) != 1 || g.Services[0].Checks[0].Path != "/readyz" || g.Services[0].Checks[0].Interval != 10*time.Second {
		t.Error("the metrics service is not checked on /readyz")
	}
}

// An unknown key is refused: the decoder is strict.
func TestUnknownKeyRefused(t *testing.T) {
	file, _ := hclsyntax.ParseConfig([]byte("group \"g\" {\n  cuont = 1\n}\n"), "x.hcl", hcl.InitialPos)
	var job api.Job
	if diags := decodeBody(file.Body, reflect.ValueOf(&job).Elem()); !diags.HasErrors() || !strings.Contains(diags.Error(), "cuont") {
		t.Fatalf("an unknown key passed: %v", diags)
	}
}
