package daemon

import (
	"context"
	"encoding/json"
	"time"

	"github.com/vramward/vramward/host/models"
	"github.com/vramward/vramward/host/pluginhost"
	"github.com/vramward/vramward/sdk/schema"
	"github.com/vramward/vramward/sdk/vram"
)

// startVram launches the VRAM backend, configures it with where models may
// be opened, loads every model the loader accepted and seals it here (the
// seal key, derived from the worker token, never leaves the host), and
// starts the verify loop.
func (d *Daemon) startVram(ctx, interrupt context.Context) error {
	client, err := d.connectVram(ctx)
	if err != nil {
		return err
	}
	key, err := vram.DeriveSealKey(d.token)
	if err != nil {
		return err
	}
	d.shards = models.NewShards(client, d.bus, d.modelMetrics, models.SealOptions{
		Key: key, WorkerID: d.cfg.Worker.ID, RequireBackend: d.cfg.Vram.RequireBackend, OnFailure: d.cfg.Verify.OnFailure,
	}, d.log.Named("vram"))
	if err := d.shards.Load(interrupt, d.models); err != nil {
		return err
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.runVram(loopCtx)
	}()
	d.stopVerify = func() { cancel(); <-done }
	return nil
}

// connectVram launches and configures the backend plugin and records
// PluginStarted.
func (d *Daemon) connectVram(ctx context.Context) (*vram.Client, error) {
	u := d.cfg.Vram
	log := d.log.Named("vram")
	half := vram.PluginForHost(log)
	proc, _, err := d.launchUse(ctx, u, half, log)
	if err != nil {
		return nil, err
	}
	var backend string
	k := kind[*vram.Client]{
		role: "vram",
		info: func(c *vram.Client, ctx context.Context) (string, schema.Schema, error) {
			info, err := c.Info(ctx)
			return info.Version, info.Schema, err
		},
		configure: func(c *vram.Client, ctx context.Context, cfg []byte) (err error) {
			backend, err = c.Configure(ctx, cfg, d.modelAccess())
			return err
		},
		fields: fieldsOf(func(f *vram.Failure) []*schema.FieldError { return f.Fields }),
	}
	client, proc, version, err := k.start(ctx, d.cfg, d.launcher, u, proc, half, d.emitAsync)
	if err != nil {
		return nil, err
	}
	d.policies.Store(u, proc.Spec.Policy)
	if backend == vram.BackendEmulated {
		log.Warn("the VRAM backend is EMULATED: shards live in host memory and prove no GPU residency")
	}
	d.vram, d.vramVersion = proc, version
	return client, nil
}

// runVram verifies every seal each verify.interval. When the backend's
// process has died, its device memory died with it: the crash is recorded,
// the plugin restarted with backoff, and every model loaded and sealed
// again, so nothing is left unsealed or silently dropped.
func (d *Daemon) runVram(ctx context.Context) {
	t := time.NewTicker(d.cfg.Verify.Interval)
	defer t.Stop()
	retry := pluginhost.NewRestarts(0, 0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if d.vram != nil && d.vram.Crashed() {
			d.recoverVram(ctx, retry)
			continue
		}
		if err := d.shards.VerifyAll(ctx); err != nil && ctx.Err() == nil {
			d.log.Error("seal verification round: an event was not recorded", "error", err)
		}
	}
}

func (d *Daemon) recoverVram(ctx context.Context, retry *pluginhost.Restarts) {
	proc := d.vram
	log := d.log.Named("vram")
	log.Error("the VRAM backend crashed; its shards are gone with it", "pid", proc.Pid, "exit", proc.ExitReason())
	if ev, ok := pluginhost.CrashEvent(proc, d.vramVersion); ok {
		if err := d.bus.Emit(ctx, ev); err != nil {
			log.Error("PluginCrashed not recorded", "error", err)
		}
	}
	proc.MarkCrashed()
	d.vram = nil
	for ctx.Err() == nil {
		client, err := d.connectVram(ctx)
		if err == nil {
			d.launcher.Metrics.CountRestart(proc.Spec.Name)
			retry.Reset()
			d.shards.Reset(client)
			if err := d.shards.Load(ctx, d.models); err != nil {
				log.Error("reloading the models after the restart: an event was not recorded", "error", err)
			}
			return
		}
		if d.vram != nil {
			d.vram.Stop()
			d.vram = nil
		}
		log.Error("VRAM backend restart failed; retrying", "error", err)
		if !retry.Wait(ctx.Done()) {
			return
		}
	}
}

// stopVram ends the verify loop, releases every shard (recording each) and
// ends the backend's process. It runs before the bus closes, so the
// releases are in the trail before HostStopped.
func (d *Daemon) stopVram() {
	if d.stopVerify != nil {
		d.stopVerify()
		d.stopVerify = nil
	}
	if d.shards != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := d.shards.ReleaseAll(ctx); err != nil {
			d.log.Error("releasing the shards at shutdown", "error", err)
		}
		cancel()
		d.shards = nil
	}
	if d.vram != nil {
		d.vram.Stop()
		d.vram = nil
	}
}

// Shards is the sealed shards (nil without a vram block).
func (d *Daemon) Shards() *models.Shards { return d.shards }

// modelAccess is where the VRAM backend may open models: the loader's
// allowed roots and size cap, so that the copy to the device is confined
// exactly as the loader's checks were.
func (d *Daemon) modelAccess() vram.Models {
	if d.cfg.Loader == nil || d.cfg.Loader.ConfigJSON == nil {
		return vram.Models{}
	}
	var lc struct {
		Roots    []string `json:"allowed_roots"`
		MaxBytes uint64   `json:"max_file_bytes"`
	}
	if err := json.Unmarshal(d.cfg.Loader.ConfigJSON, &lc); err != nil {
		d.log.Error("the loader's config does not say where models are; the VRAM backend may open none", "error", err)
		return vram.Models{}
	}
	return vram.Models{AllowedRoots: lc.Roots, MaxFileBytes: lc.MaxBytes}
}
