package models

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/vramward/vramward/host/config"
	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/loader"
)

var model = &config.Model{Name: "m", Path: "/models/m.gguf", SHA256: "aa"}

// loader0 is what the loader says of every test model.
var loader0 = loader.Model{SHA256: fileSHA, Summary: loader.Summary{FileBytes: 10}}

const fileSHA = "ab00000000000000000000000000000000000000000000000000000000000000"

func field(t *testing.T, e audit.Event, k string) string {
	t.Helper()
	v, ok := e.Field(k)
	if !ok {
		t.Fatalf("%s lacks %s", e.Type, k)
	}
	if v.Kind() == audit.KindUint {
		return fmt.Sprint(v.Uint())
	}
	return v.String()
}

func TestEveryRefusalHasItsEvent(t *testing.T) {
	rej := func(reason loader.Reason, mod func(r *loader.Rejection)) error {
		r := loader.Reject(reason, model.Path, "why")
		if mod != nil {
			mod(r)
		}
		return r
	}
	cases := []struct {
		err    error
		typ    audit.Type
		sev    audit.Severity
		fields map[string]string
	}{
		{rej(loader.ReasonPathTraversal, func(r *loader.Rejection) { r.AllowedRoots = []string{"/a", "/b"} }), audit.PathTraversalAttempt, audit.Critical,
			map[string]string{"attempted_path": "/models/m.gguf", "allowed_roots": "/a, /b"}},
		{rej(loader.ReasonIntegrityViolation, func(r *loader.Rejection) { r.ExpectedSHA256, r.ActualSHA256 = "aa", "bb" }), audit.IntegrityViolation, audit.Critical,
			map[string]string{"expected_hash": "aa", "actual_hash": "bb", "resource_type": "model_file", "action_taken": ActionRefused}},
		{rej(loader.ReasonMalformedModel, func(r *loader.Rejection) { r.FormatReason = "BAD_DIMS" }), audit.MalformedModelRejected, audit.High,
			map[string]string{"model_ref": "m", "validation_error": "MALFORMED_MODEL: why"}},
		{rej(loader.ReasonNotRegularFile, nil), audit.MalformedModelRejected, audit.High,
			map[string]string{"validation_error": "NOT_REGULAR_FILE: why"}},
		{rej(loader.ReasonTooLarge, func(r *loader.Rejection) { r.Limit, r.Actual = 10, 11 }), audit.ResourceLimitViolation, audit.High,
			map[string]string{"limit_type": "max_file_bytes", "limit_value": "10", "actual_value": "11"}},
	}
	for _, c := range cases {
		e, ok, err := ModelEvent(model, nil, c.err)
		if err != nil || !ok {
			t.Fatalf("%v: ok %v err %v", c.err, ok, err)
		}
		if e.Type != c.typ || e.Severity != c.sev {
			t.Fatalf("%v: %s %s, want %s %s", c.err, e.Type, e.Severity, c.typ, c.sev)
		}
		for k, want := range c.fields {
			if got := field(t, e, k); got != want {
				t.Errorf("%s.%s = %q, want %q", e.Type, k, got, want)
			}
		}
	}
	// Operational failures say nothing about the model: no event.
	for _, err := range []error{rej(loader.ReasonNotFound, nil), rej(loader.ReasonUnavailable, nil), errors.New("boom")} {
		if _, ok, _ := ModelEvent(model, nil, err); ok {
			t.Errorf("%v made an event", err)
		}
	}
}

type fakeValidator map[string]error

func (f fakeValidator) Validate(_ context.Context, path, _ string) (*loader.Model, error) {
	if err := f[path]; err != nil {
		return nil, err
	}
	return &loader.Model{SHA256: "aa", Summary: loader.Summary{Architecture: new("llama"), TensorCount: 3, FileBytes: 99}}, nil
}

type recorder struct {
	events []audit.Event
	fail   bool
}

func (r *recorder) Emit(_ context.Context, e audit.Event) error {
	if r.fail && e.Severity == audit.Critical {
		return errors.New("not durable")
	}
	r.events = append(r.events, e)
	return nil
}

func TestCheckModelsRecordsEachAndFailsClosed(t *testing.T) {
	models := []*config.Model{{Name: "ok", Path: "/m/ok"}, {Name: "out", Path: "/etc/x"}, {Name: "gone", Path: "/m/gone"}}
	v := fakeValidator{
		"/etc/x":  &loader.Rejection{Reason: loader.ReasonPathTraversal, Offset: -1},
		"/m/gone": &loader.Rejection{Reason: loader.ReasonNotFound, Offset: -1},
	}
	rec := &recorder{}
	res, err := CheckModels(context.Background(), v, models, rec, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 || res[0].Loaded == nil || res[1].Err == nil || res[2].Err == nil {
		t.Fatalf("%+v", res)
	}
	if len(rec.events) != 2 || rec.events[0].Type != audit.ModelLoaded || rec.events[1].Type != audit.PathTraversalAttempt {
		t.Fatalf("%v", rec.events)
	}
	// A CRITICAL event that cannot be made durable fails the check, after
	// every model was looked at.
	rec = &recorder{fail: true}
	res, err = CheckModels(context.Background(), v, models, rec, hclog.NewNullLogger())
	if err == nil || len(res) != 3 {
		t.Fatalf("err %v, %d results", err, len(res))
	}
}
