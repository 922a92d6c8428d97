package models

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vramward/vramward/host/config"
	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/loader"
)

// Validator is the part of a loader client the worker needs.
type Validator interface {
	Validate(ctx context.Context, path, expectedSHA256 string) (*loader.Model, error)
}

// Emitter records an event; for a CRITICAL one it returns only when the
// event is durable as the config requires.
type Emitter interface {
	Emit(ctx context.Context, e audit.Event) error
}

// Result is the outcome for one model.
type Result struct {
	Model *config.Model
	// Loaded is set when the model passed every check.
	Loaded *loader.Model
	// Err is the refusal or failure; nil when Loaded is set.
	Err error
}

// ValidateTimeout bounds one model's check: hashing reads the whole file,
// so it is generous (a 100 GB file at 1 GB/s takes under two minutes).
const ValidateTimeout = 30 * time.Minute

// CheckModels validates every model through v and records each outcome.
// It fails closed: an event that cannot be recorded (a CRITICAL one not made
// durable) is returned as an error, after the other models were checked.
//
// ctx ending stops it between two models (a SIGTERM during start): the
// model being checked is finished and recorded, the rest are not checked,
// and the results cover the models checked.
func CheckModels(ctx context.Context, v Validator, models []*config.Model, em Emitter, log hclog.Logger) ([]Result, error) {
	var results []Result
	var errs []error
	stop, ctx := ctx, context.WithoutCancel(ctx)
	for i, m := range models {
		if stop.Err() != nil {
			log.Warn("stopping between models: the rest are not checked", "checked", i, "models", len(models))
			break
		}
		vctx, cancel := context.WithTimeout(ctx, ValidateTimeout)
		model, err := v.Validate(vctx, m.Path, m.SHA256)
		cancel()
		results = append(results, Result{Model: m, Loaded: model, Err: err})
		if err != nil {
			log.Error("model refused", "model", m.Name, "path", m.Path, "error", err)
		} else {
			log.Info("model checked", "model", m.Name, "sha256", model.SHA256, "architecture", model.Summary.ArchitectureName(),
				"tensors", model.Summary.TensorCount, "bytes", model.Summary.FileBytes)
		}
		e, ok, eerr := ModelEvent(m, model, err)
		if eerr != nil {
			errs = append(errs, fmt.Errorf("model %s: make event: %w", m.Name, eerr))
			continue
		}
		if !ok {
			continue
		}
		if err := em.Emit(ctx, e); err != nil {
			errs = append(errs, fmt.Errorf("model %s: record %s: %w", m.Name, e.Type, err))
		}
	}
	return results, errors.Join(errs...)
}
