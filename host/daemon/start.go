package daemon

import (
	"context"
	"errors"
	"fmt"

	"github.com/vramward/vramward/host/config"
	"github.com/vramward/vramward/host/pluginhost"
	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/schema"
)

// A plugin of any kind starts the same way once launched: ask its Info,
// decode its config block against the schema it publishes (on the first
// start; a restart reuses the decoded values), Configure it (a refusal that
// names config attributes becomes diagnostics at the block's lines), and
// record PluginStarted. kind is what each kind's client brings to it.
type kind[C interface{ Sandbox() (bool, string) }] struct {
	role      string // "sink", "loader" or "vram", as errors name it
	info      func(C, context.Context) (version string, sch schema.Schema, err error)
	configure func(C, context.Context, []byte) error
	// fields are the config attributes a Configure error blames.
	fields func(error) []*schema.FieldError
}

// start runs the shared sequence on a launched plugin; on failure it
// stops the process. It returns the plugin's version.
func (k kind[C]) start(ctx context.Context, cfg *config.Config, launcher *pluginhost.Launcher, use *config.PluginUse, proc *pluginhost.Process, emit func(audit.Event)) (C, string, error) {
	client := proc.Raw.(C)
	fail := func(err error) (C, string, error) {
		proc.Stop()
		var zero C
		return zero, "", err
	}
	label := use.Name
	if label == "" {
		label = proc.Spec.Name
	}
	version, sch, err := k.info(client, ctx)
	if err != nil {
		return fail(fmt.Errorf("%s %s: plugin info: %w", k.role, label, err))
	}
	if use.ConfigJSON == nil {
		if diags := cfg.DecodeUseConfig(use, sch); diags.HasErrors() {
			return fail(&ConfigError{Diags: diags})
		}
	}
	if err := k.configure(client, ctx, use.ConfigJSON); err != nil {
		if fe := k.fields(err); len(fe) > 0 {
			return fail(&ConfigError{Diags: use.FieldDiagnostics(fe)})
		}
		return fail(fmt.Errorf("%s %s: configure: %w", k.role, label, err))
	}
	sb, detail := client.Sandbox()
	if ev, err := launcher.Metrics.Started(proc, version, sb, detail); err == nil {
		emit(ev)
	}
	return client, version, nil
}

// fieldsOf returns the config attributes an error of type E blames.
func fieldsOf[E error](get func(E) []*schema.FieldError) func(error) []*schema.FieldError {
	return func(err error) []*schema.FieldError {
		var e E
		if errors.As(err, &e) {
			return get(e)
		}
		return nil
	}
}
