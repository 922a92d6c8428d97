// Package models is the host's main job for each configured model: have the
// loader plugin confine, hash and validate the file (check.go), have the
// VRAM backend load it, seal it here and keep re-verifying the seal
// (vram.go), and record every outcome as an audit event. The host, not the
// plugin, makes the events, so a faulty plugin cannot skip or forge the
// record of its own refusal.
package models

import (
	"errors"
	"strings"

	"github.com/vramward/vramward/host/config"
	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/loader"
)

// ActionRefused is the action_taken of every refused model: it is not
// loaded.
const ActionRefused = "load_refused"

// ModelEvent is the audit event for the outcome of validating m: ModelLoaded
// on success, the security event for a refusal, and no event (ok false) for
// an operational failure (missing file, unreachable plugin) that says
// nothing about the model; those are logged and counted by the caller.
func ModelEvent(m *config.Model, model *loader.Model, err error) (audit.Event, bool, error) {
	if err == nil {
		s := model.Summary
		e, err := audit.New(audit.ModelLoaded, audit.Actor{},
			audit.Str("model_ref", m.Name), audit.Str("sha256", model.SHA256), audit.Str("architecture", s.ArchitectureName()),
			audit.Uint("tensor_count", s.TensorCount), audit.Uint("file_bytes", s.FileBytes))
		return e, true, err
	}
	var r *loader.Rejection
	if !errors.As(err, &r) {
		return audit.Event{}, false, nil
	}
	var (
		t      audit.Type
		fields []audit.Field
	)
	switch r.Reason {
	case loader.ReasonPathTraversal:
		t, fields = audit.PathTraversalAttempt, pathTraversal(m, r.AllowedRoots)
	case loader.ReasonIntegrityViolation:
		t = audit.IntegrityViolation
		fields = []audit.Field{audit.Str("resource_type", "model_file"), audit.Str("resource_id", m.Name+" ("+m.Path+")"),
			audit.Str("expected_hash", r.ExpectedSHA256), audit.Str("actual_hash", r.ActualSHA256), audit.Str("action_taken", ActionRefused)}
	case loader.ReasonMalformedModel, loader.ReasonNotRegularFile:
		t = audit.MalformedModelRejected
		fields = []audit.Field{audit.Str("model_ref", m.Name), audit.Str("validation_error", string(r.Reason)+": "+r.Msg), audit.Str("action_taken", ActionRefused)}
	case loader.ReasonTooLarge:
		t, fields = audit.ResourceLimitViolation, modelTooLarge(r.Limit, r.Actual)
	default:
		return audit.Event{}, false, nil
	}
	e, err := audit.New(t, audit.Actor{}, fields...)
	return e, true, err
}

// pathTraversal is a PathTraversalAttempt's fields for m, whether the
// loader refused its path at the check or the VRAM backend at the copy.
func pathTraversal(m *config.Model, roots []string) []audit.Field {
	return []audit.Field{audit.Str("attempted_path", m.Path), audit.Str("allowed_roots", strings.Join(roots, ", "))}
}

// modelTooLarge is a ResourceLimitViolation's fields for a model file over
// max_file_bytes, at the check or at the copy: one action either way.
func modelTooLarge(limit, actual uint64) []audit.Field {
	return []audit.Field{audit.Str("resource_type", "model_file"), audit.Str("limit_type", loader.KeyMaxFileBytes),
		audit.Uint("limit_value", limit), audit.Uint("actual_value", actual), audit.Str("action_taken", ActionRefused)}
}
