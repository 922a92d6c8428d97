package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vramward/vramward/host/worker"
	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/handshake"
	"github.com/vramward/vramward/sdk/vram"
)

// startVram launches the VRAM backend, configures it with the seal key
// derived from the worker token (the token stays here), loads and seals
// every model the loader accepted, and starts the verify loop.
func (d *Daemon) startVram(ctx context.Context) error {
	u := d.cfg.Vram
	log := d.log.Named("vram")
	proc, p, err := d.launchUse(ctx, u, vram.PluginForHost(log), log)
	if err != nil {
		return err
	}
	d.vram = proc
	client := proc.Raw.(*vram.Client)
	info, err := client.Info(ctx)
	if err != nil {
		return fmt.Errorf("vram %s: plugin info: %w", p.Name, err)
	}
	if u.ConfigJSON == nil {
		if diags := d.cfg.DecodeUseConfig(u, info.Schema); diags.HasErrors() {
			return &ConfigError{Diags: diags}
		}
	}
	key, err := vram.DeriveSealKey(d.token)
	if err != nil {
		return err
	}
	backend, err := client.Configure(ctx, u.ConfigJSON, key)
	clear(key)
	if err != nil {
		var f *vram.Failure
		if errors.As(err, &f) && len(f.Fields) > 0 {
			return &ConfigError{Diags: u.FieldDiagnostics(f.Fields)}
		}
		return fmt.Errorf("vram %s: configure: %w", p.Name, err)
	}
	if backend == vram.BackendEmulated {
		log.Warn("the VRAM backend is EMULATED: shards live in host memory and prove no GPU residency")
	}
	if ev, err := audit.New(audit.PluginStarted, audit.Actor{},
		audit.Str("plugin", p.Name), audit.Str("kind", handshake.KindVramBackend),
		audit.Str("version", info.Version), audit.Uint("pid", uint64(proc.Pid))); err == nil {
		d.emitAsync(ev)
	}
	d.shards = worker.NewShards(client, d.bus, d.workerMetrics, d.cfg.Verify.OnFailure, log)
	if err := d.shards.Load(ctx, d.models); err != nil {
		return err
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.shards.Run(loopCtx, d.cfg.Verify.Interval)
	}()
	d.stopVerify = func() { cancel(); <-done }
	return nil
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
func (d *Daemon) Shards() *worker.Shards { return d.shards }
