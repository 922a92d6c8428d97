package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"

	plugin "github.com/hashicorp/go-plugin"

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
// stops the process. It returns the client and the process, and the
// plugin's version. The host's sandbox policy for the plugin comes from its
// schema: a first start, launched under the policy it had (System alone),
// is relaunched under the one its schema and config call for (half makes
// the new client), before anything is configured.
func (k kind[C]) start(ctx context.Context, cfg *config.Config, launcher *pluginhost.Launcher, use *config.PluginUse, proc *pluginhost.Process, half plugin.Plugin, emit func(audit.Event)) (C, *pluginhost.Process, string, error) {
	client := proc.Raw.(C)
	fail := func(err error) (C, *pluginhost.Process, string, error) {
		proc.Stop()
		var zero C
		return zero, nil, "", err
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
	if want := usePolicy(cfg, use, sch); !samePolicy(want, proc.Spec.Policy) {
		// A directory the plugin writes in must exist for the sandbox to
		// name it; the plugin would have made it (0700, as a sink does).
		for _, d := range want.WriteDirs {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return fail(fmt.Errorf("%s %s: the directory it writes in: %w", k.role, label, err))
			}
		}
		spec := proc.Spec
		spec.Policy = want
		proc.Stop()
		np, err := launcher.Launch(ctx, spec, half)
		if err != nil {
			var zero C
			return zero, nil, "", fmt.Errorf("%s %s: relaunch under its sandbox policy: %w", k.role, label, err)
		}
		proc, client = np, np.Raw.(C)
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
	return client, proc, version, nil
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
