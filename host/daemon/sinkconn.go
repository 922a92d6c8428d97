package daemon

import (
	"context"
	"errors"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"

	hostaudit "github.com/vramward/vramward/host/audit"
	"github.com/vramward/vramward/host/config"
	"github.com/vramward/vramward/host/pluginhost"
	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audit/sinkclient"
	"github.com/vramward/vramward/sdk/schema"
)

// ConfigError is a sink configuration problem found while starting its
// plugin (its schema, or what its Configure refused), with source ranges.
type ConfigError struct {
	Diags hcl.Diagnostics
}

func (e *ConfigError) Error() string { return config.Format(e.Diags) }

var sinkKind = kind[*sinkclient.Client]{
	role: "sink",
	info: func(c *sinkclient.Client, ctx context.Context) (string, schema.Schema, error) {
		info, err := c.Info(ctx)
		return info.Version, info.Schema, err
	},
	configure: (*sinkclient.Client).Configure,
	fields:    fieldsOf(func(e *audit.Error) []*schema.FieldError { return e.Fields }),
}

// sinkConn launches and relaunches one sink's plugin for the bus.
type sinkConn struct {
	cfg      *config.Config
	sink     *config.Sink
	spec     pluginhost.Spec
	launcher *pluginhost.Launcher
	metrics  *sinkclient.Metrics
	log      hclog.Logger
	emit     func(audit.Event) // records lifecycle events asynchronously

	mu           sync.Mutex
	proc         *pluginhost.Process
	version      string
	starts       int
	lastMismatch string
}

var _ hostaudit.SinkConn = (*sinkConn)(nil)

func (c *sinkConn) Name() string { return c.sink.Name }

// Start launches the plugin, decodes the sink's config block against the
// schema the plugin publishes (first start only) and configures it.
func (c *sinkConn) Start(ctx context.Context) (*sinkclient.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	half := sinkclient.Plugin(sinkclient.Options{Sink: c.sink.Name, Metrics: c.metrics, Logger: c.log, MaxBatchEvents: c.cfg.Audit.BatchSize})
	proc, err := c.launcher.Launch(ctx, c.spec, half)
	if err != nil {
		c.launcher.Metrics.MarkDown(c.spec)
		var ce *pluginhost.ChecksumError
		if errors.As(err, &ce) && ce.Actual != c.lastMismatch {
			c.lastMismatch = ce.Actual
			c.emitMismatch(ce)
		}
		return nil, err
	}
	client, proc, version, err := sinkKind.start(ctx, c.cfg, c.launcher, c.sink, proc, half, c.emit)
	if err != nil {
		return nil, err
	}
	c.spec.Policy = proc.Spec.Policy
	if c.starts > 0 {
		c.launcher.Metrics.CountRestart(c.spec.Name)
	}
	c.starts++
	c.proc, c.version = proc, version
	return client, nil
}

func (c *sinkConn) emitMismatch(ce *pluginhost.ChecksumError) {
	if ev, ok := mismatchEvent(ce, c.log); ok {
		c.emit(ev)
	}
}

// mismatchEvent logs a refused plugin binary and makes its
// PluginChecksumMismatch event.
func mismatchEvent(ce *pluginhost.ChecksumError, log hclog.Logger) (audit.Event, bool) {
	ev, err := audit.Make(audit.Actor{}, audit.PluginChecksumMismatchFields{Plugin: ce.Plugin, Path: ce.Path,
		ExpectedSHA256: ce.Expected, ActualSHA256: ce.Actual})
	if err != nil {
		log.Error("could not make the PluginChecksumMismatch event", "error", err)
		return audit.Event{}, false
	}
	log.Error("plugin binary refused: checksum mismatch", "plugin", ce.Plugin, "path", ce.Path, "expected", ce.Expected, "actual", ce.Actual)
	return ev, true
}

// Crash reports a plugin process that exited on its own.
func (c *sinkConn) Crash() (audit.Event, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return pluginhost.CrashEvent(c.proc, c.version)
}

// Stop ends the plugin process, if any.
func (c *sinkConn) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc != nil {
		if c.proc.Crashed() {
			c.proc.MarkCrashed()
		}
		c.proc.Stop()
		c.proc = nil
	}
}

// OnNode says the sink writes a file on this node: its schema marks a
// written file (what the sandbox policy lets it write, and what a start
// after a crash reads to roll the log forward). Until its first start it
// counts as off the node, which only makes checkpoints wait for the state.
func (c *sinkConn) OnNode() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.starts > 0 && len(c.spec.Policy.WriteDirs) > 0
}

// up reports whether the plugin process runs.
func (c *sinkConn) up() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.proc != nil && !c.proc.Exited()
}
