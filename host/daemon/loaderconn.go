package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"

	"github.com/vramward/vramward/host/config"
	"github.com/vramward/vramward/host/models"
	"github.com/vramward/vramward/host/pluginhost"
	"github.com/vramward/vramward/sdk/loader"
	"github.com/vramward/vramward/sdk/schema"
)

// startLoader launches the loader plugin, configures it from the loader
// block and checks every configured model through it, recording each
// outcome. A refused model does not stop the host (it is not loaded, and
// its event says why); a loader that cannot start, or an event that cannot
// be made durable, does.
func (d *Daemon) startLoader(ctx, interrupt context.Context) error {
	sup := &loaderSupervisor{d: d, log: d.log.Named("loader"), restarts: pluginhost.NewRestarts(0, 0)}
	if err := sup.connect(ctx); err != nil {
		return err
	}
	results, err := models.CheckModels(interrupt, sup, d.cfg.Models, d.bus, sup.log)
	d.models = results
	return err
}

// loaderSupervisor is the Validator the worker uses: when the loader's
// process dies during a check (a file that crashes its parser, say), the
// crash is recorded, the plugin restarted and the check tried again, at
// most maxLoaderRestarts times for one model, so a file that crashes the
// loader every time is refused instead of looping.
type loaderSupervisor struct {
	d        *Daemon
	log      hclog.Logger
	client   *loader.Client
	version  string
	restarts *pluginhost.Restarts
}

const maxLoaderRestarts = 2

var loaderKind = kind[*loader.Client]{
	role: "loader",
	info: func(c *loader.Client, ctx context.Context) (string, schema.Schema, error) {
		info, err := c.Info(ctx)
		return info.Version, info.Schema, err
	},
	configure: (*loader.Client).Configure,
	fields:    fieldsOf(func(r *loader.Rejection) []*schema.FieldError { return r.Fields }),
}

func (s *loaderSupervisor) connect(ctx context.Context) error {
	d, u := s.d, s.d.cfg.Loader
	half := loader.PluginForHost(s.log)
	proc, _, err := d.launchUse(ctx, u, half, s.log)
	if err != nil {
		return err
	}
	client, proc, version, err := loaderKind.start(ctx, d.cfg, d.launcher, u, proc, half, d.emitAsync)
	if err != nil {
		return err
	}
	d.policies.Store(u, proc.Spec.Policy)
	d.loader, s.client, s.version = proc, client, version
	return nil
}

// Validate implements models.Validator.
func (s *loaderSupervisor) Validate(ctx context.Context, path, sha string) (*loader.Model, error) {
	for restarts := 0; ; restarts++ {
		m, err := s.client.Validate(ctx, path, sha)
		proc := s.d.loader
		if !errors.Is(err, loader.ReasonUnavailable) || proc == nil || !s.crashed(proc) {
			if restarts == 0 {
				s.restarts.Reset() // this model did not crash it
			}
			return m, err
		}
		s.log.Error("the loader crashed while checking a model", "path", path, "pid", proc.Pid, "exit", proc.ExitReason())
		if ev, ok := pluginhost.CrashEvent(proc, s.version); ok {
			if eerr := s.d.bus.Emit(ctx, ev); eerr != nil {
				return nil, fmt.Errorf("record PluginCrashed: %w", eerr)
			}
		}
		proc.MarkCrashed()
		s.d.loader = nil
		if restarts == maxLoaderRestarts {
			// Leave a loader running for the next model.
			if cerr := s.connect(ctx); cerr != nil {
				return nil, errors.Join(err, cerr)
			}
			return nil, fmt.Errorf("%s crashed the loader %d times; not loaded: %w", path, restarts+1, err)
		}
		if !s.restarts.Wait(ctx.Done()) {
			return nil, errors.Join(err, ctx.Err())
		}
		if cerr := s.connect(ctx); cerr != nil {
			return nil, errors.Join(err, cerr)
		}
		s.d.launcher.Metrics.CountRestart(proc.Spec.Name)
	}
}

// crashed waits a moment for go-plugin to notice the exit: the RPC can
// fail a little before the process is reaped.
func (s *loaderSupervisor) crashed(proc *pluginhost.Process) bool {
	for i := 0; i < 50; i++ {
		if proc.Crashed() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// launchUse starts the plugin a loader or vram block names. A binary that
// differs from its pinned sha256 is never run, and PluginChecksumMismatch
// (CRITICAL) is recorded.
func (d *Daemon) launchUse(ctx context.Context, u *config.PluginUse, half plugin.Plugin, log hclog.Logger) (*pluginhost.Process, *config.Plugin, error) {
	p := d.cfg.Plugin(u.Plugin)
	spec := SpecOf(p)
	if pol, ok := d.policies.Load(u); ok {
		spec.Policy = pol.(pluginhost.Policy)
	}
	proc, err := d.launcher.Launch(ctx, spec, half)
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
func (d *Daemon) Models() []models.Result { return d.models }
