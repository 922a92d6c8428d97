package daemon

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"

	"github.com/vramward/vramward/host/config"
	"github.com/vramward/vramward/host/pluginhost"
	"github.com/vramward/vramward/host/worker"
	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/handshake"
	"github.com/vramward/vramward/sdk/loader"
)

// startLoader launches the loader plugin, configures it from the loader
// block and checks every configured model through it, recording each
// outcome. A refused model does not stop the host (it is not loaded, and
// its event says why); a loader that cannot start, or an event that cannot
// be made durable, does.
func (d *Daemon) startLoader(ctx context.Context) error {
	u := d.cfg.Loader
	log := d.log.Named("loader")
	proc, p, err := d.launchUse(ctx, u, loader.PluginForHost(log), log)
	if err != nil {
		return err
	}
	d.loader = proc
	client := proc.Raw.(*loader.Client)
	info, err := client.Info(ctx)
	if err != nil {
		return fmt.Errorf("loader %s: plugin info: %w", p.Name, err)
	}
	if u.ConfigJSON == nil {
		if diags := d.cfg.DecodeUseConfig(u, info.Schema); diags.HasErrors() {
			return &ConfigError{Diags: diags}
		}
	}
	if err := client.Configure(ctx, u.ConfigJSON); err != nil {
		var r *loader.Rejection
		if errors.As(err, &r) && len(r.Fields) > 0 {
			return &ConfigError{Diags: u.FieldDiagnostics(r.Fields)}
		}
		return fmt.Errorf("loader %s: configure: %w", p.Name, err)
	}
	if ev, err := audit.New(audit.PluginStarted, audit.Actor{},
		audit.Str("plugin", p.Name), audit.Str("kind", handshake.KindModelLoader),
		audit.Str("version", info.Version), audit.Uint("pid", uint64(proc.Pid))); err == nil {
		d.emitAsync(ev)
	}
	results, err := worker.CheckModels(ctx, client, d.cfg.Models, d.bus, log)
	d.models = results
	return err
}

// launchUse starts the plugin a loader or vram block names. A binary that
// differs from its pinned sha256 is never run, and PluginChecksumMismatch
// (CRITICAL) is recorded.
func (d *Daemon) launchUse(ctx context.Context, u *config.PluginUse, half plugin.Plugin, log hclog.Logger) (*pluginhost.Process, *config.Plugin, error) {
	p := d.cfg.Plugin(u.Plugin)
	spec := pluginhost.Spec{Name: p.Name, Kind: p.Kind, Path: p.Path, SHA256: p.SHA256, StartTimeout: p.StartTimeout}
	proc, err := d.launcher.Launch(spec, half)
	var ce *pluginhost.ChecksumError
	if errors.As(err, &ce) {
		if ev, ok := mismatchEvent(ce, log); ok {
			if eerr := d.bus.Emit(ctx, ev); eerr != nil {
				log.Error("PluginChecksumMismatch not recorded", "error", eerr)
			}
		}
	}
	return proc, p, err
}

// Models is the outcome of each configured model's check at start.
func (d *Daemon) Models() []worker.Result { return d.models }
