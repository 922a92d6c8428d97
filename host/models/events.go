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
		e, err := audit.Make(audit.Actor{}, audit.ModelLoadedFields{ModelRef: m.Name, SHA256: model.SHA256,
			Architecture: s.ArchitectureName(), TensorCount: s.TensorCount, FileBytes: s.FileBytes})
		return e, true, err
	}
	var r *loader.Rejection
	if !errors.As(err, &r) {
		return audit.Event{}, false, nil
	}
	var f audit.Fields
	switch r.Reason {
	case loader.ReasonPathTraversal:
		f = pathTraversal(m, r.AllowedRoots)
	case loader.ReasonIntegrityViolation:
		f = audit.IntegrityViolationFields{ResourceType: "model_file", ResourceID: m.Name + " (" + m.Path + ")",
			ExpectedHash: r.ExpectedSHA256, ActualHash: r.ActualSHA256, ActionTaken: ActionRefused}
	case loader.ReasonMalformedModel, loader.ReasonNotRegularFile:
		f = audit.MalformedModelRejectedFields{ModelRef: m.Name, ValidationError: string(r.Reason) + ": " + r.Msg, ActionTaken: ActionRefused}
	case loader.ReasonTooLarge:
		f = modelTooLarge(r.Limit, r.Actual)
	default:
		return audit.Event{}, false, nil
	}
	e, err := audit.Make(audit.Actor{}, f)
	return e, true, err
}

// pathTraversal is a PathTraversalAttempt's fields for m, whether the
// loader refused its path at the check or the VRAM backend at the copy.
func pathTraversal(m *config.Model, roots []string) audit.PathTraversalAttemptFields {
	return audit.PathTraversalAttemptFields{AttemptedPath: m.Path, AllowedRoots: strings.Join(roots, ", ")}
}

// modelTooLarge is a ResourceLimitViolation's fields for a model file over
// max_file_bytes, at the check or at the copy: one action either way.
func modelTooLarge(limit, actual uint64) audit.ResourceLimitViolationFields {
	return audit.ResourceLimitViolationFields{ResourceType: "model_file", LimitType: loader.KeyMaxFileBytes,
		LimitValue: limit, ActualValue: actual, ActionTaken: ActionRefused}
}
