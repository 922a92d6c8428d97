// Package daemon wires the host together: config, plugins, the audit bus,
// metrics, and the one shutdown path every way out of `vramward run` takes.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	hostaudit "github.com/vramward/vramward/host/audit"
	"github.com/vramward/vramward/host/config"
	"github.com/vramward/vramward/host/metrics"
	"github.com/vramward/vramward/host/models"
	"github.com/vramward/vramward/host/pluginhost"
	"github.com/vramward/vramward/host/status"
	"github.com/vramward/vramward/host/trail"
	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audit/sinkclient"
)

// Exit codes of `vramward run`, documented in the README.
const (
	ExitOK         = 0 // clean shutdown, every event delivered
	ExitStartup    = 1 // the config or a plugin prevented the start
	ExitUsage      = 2 // bad command line
	ExitIncomplete = 3 // stopped, but events were spooled or a sink did not close cleanly
)

// Options start a daemon.
type Options struct {
	Config  *config.Config
	Logger  hclog.Logger
	Version string
	// LogLevel is passed on to plugins.
	LogLevel string
	// NewLog starts a new log even when a sink's output holds records
	// (run -new-log): the state dir was lost and the operator knows.
	NewLog bool
}

// Daemon is a running host.
type Daemon struct {
	// policies are the sandbox policies of the loader and the VRAM
	// backend, by their config block, once their schema gave them.
	policies sync.Map
	cfg      *config.Config
	log      hclog.Logger
	reg      *prometheus.Registry
	bus      *hostaudit.Bus
	conns    []*sinkConn
	// launcher starts every plugin; loader is the model loader's process
	// (nil without a loader block), models the outcome of each model.
	launcher *pluginhost.Launcher
	loader   *pluginhost.Process
	models   []models.Result
	// vram is the VRAM backend's process and shards what it holds (both
	// nil without a vram block); stopVerify ends the verify loop.
	vram         *pluginhost.Process
	shards       *models.Shards
	modelMetrics *models.Metrics
	stopVerify   func()
	vramVersion  string
	metrics      *metrics.Server
	statusSrv    *status.Server
	state        hostState
	token        []byte
	version      string
}

// Start brings the host up: it reads the worker token, opens the audit
// chain, starts every sink's plugin, records HostStarted and serves metrics.
// A config problem found on the way (a plugin's schema or Configure refusing
// a value) is returned as *ConfigError with source positions.
func Start(ctx context.Context, opts Options) (*Daemon, error) { return startUntil(ctx, ctx, opts) }

// startUntil is Start whose models phase stops between two models once
// interrupt ends (a SIGTERM during the start); the sinks' start is not cut
// short by it.
func startUntil(ctx, interrupt context.Context, opts Options) (*Daemon, error) {
	d, err := prepare(ctx, opts)
	if err != nil {
		return nil, err
	}
	if err := d.start(ctx, interrupt); err != nil {
		return nil, err
	}
	return d, nil
}

// prepare does everything up to launching the plugins: the audit chain is
// open and HostStarted queued, so events can be emitted (and are held).
func prepare(ctx context.Context, opts Options) (*Daemon, error) {
	cfg := opts.Config
	log := opts.Logger
	token, err := readToken(cfg.Worker)
	if err != nil {
		return nil, err
	}
	if err := checkStateDir(cfg.Worker.StateDir); err != nil {
		return nil, fmt.Errorf("state_dir: %w", err)
	}
	// Plugins launched for their schema alone, before the bus opens.
	infoLauncher := &pluginhost.Launcher{Logger: log.Named("plugin"), LogLevel: opts.LogLevel}
	if !opts.NewLog {
		if err := refuseNewLogOverATrail(cfg, infoLauncher); err != nil {
			return nil, err
		}
	}
	d := &Daemon{cfg: cfg, log: log, reg: metrics.NewRegistry(), token: token, version: opts.Version}
	d.state.started = time.Now().UTC()
	d.state.set(status.Starting, "")
	sinkMetrics, err := sinkclient.NewMetrics(d.reg)
	if err != nil {
		return nil, err
	}
	pluginMetrics, err := pluginhost.NewMetrics(d.reg)
	if err != nil {
		return nil, err
	}
	launcher := &pluginhost.Launcher{Logger: log.Named("plugin"), Metrics: pluginMetrics, LogLevel: opts.LogLevel}
	d.launcher = launcher
	if d.modelMetrics, err = models.NewMetrics(d.reg); err != nil {
		return nil, err
	}

	var conns []hostaudit.SinkConn
	for _, s := range cfg.Audit.Sinks {
		p := cfg.Plugin(s.Plugin)
		c := &sinkConn{cfg: cfg, sink: s, launcher: launcher, metrics: sinkMetrics, log: log.Named("audit").Named(s.Name),
			spec: SpecOf(p)}
		c.emit = d.emitAsync
		d.conns = append(d.conns, c)
		conns = append(conns, c)
	}
	a := cfg.Audit
	witnesses, err := witnessClients(a.Witnesses)
	if err != nil {
		return nil, err
	}
	d.bus, err = hostaudit.New(hostaudit.Options{
		ServiceID: "vramward",
		Actor:     audit.Actor{WorkerID: cfg.Worker.ID},
		StateDir:  cfg.Worker.StateDir,
		Origin:    trail.Origin(cfg.Worker.ID),
		Limits: trail.Limits{EpochEvents: uint64(a.EpochEvents), EpochDuration: a.EpochDuration,
			CheckpointEvents: uint64(a.CheckpointEvents), CheckpointInterval: a.CheckpointInterval},
		Require:         a.Require,
		QueueSize:       a.QueueSize,
		SpoolMaxBytes:   a.SpoolMaxBytes,
		BatchSize:       a.BatchSize,
		BatchWait:       a.BatchWait,
		CriticalTimeout: a.CriticalTimeout,
		ShutdownTimeout: a.ShutdownTimeout,
		Logger:          log.Named("audit"),
		Registerer:      d.reg,
		SinkMetrics:     sinkMetrics,
		Witnesses:       witnesses,
		SinkTrails:      sinkTrails(cfg, infoLauncher),
	}, conns)
	if err != nil {
		return nil, fmt.Errorf("audit bus: %w", err)
	}
	if d.bus.Recovered {
		log.Warn("the last run did not stop cleanly: recorded AuditRecovered with the seqs it cannot vouch for; the log continues", "state_dir", cfg.Worker.StateDir)
	}
	started, err := audit.Make(audit.Actor{}, audit.HostStartedFields{Version: opts.Version, ConfigSHA256: cfg.SHA256})
	if err == nil {
		err = d.bus.Emit(ctx, started)
	}
	if err != nil {
		_ = d.bus.Close("start failed")
		return nil, fmt.Errorf("record HostStarted: %w", err)
	}
	return d, nil
}

// start serves metrics, launches the sinks' plugins and waits until
// audit.require is met; only then does it start the loader and the VRAM
// backend, whose work causes events. Whatever fails, it has shut down
// through the one path before it returns.
func (d *Daemon) start(ctx, interrupt context.Context) error {
	cfg, log := d.cfg, d.log
	var err error
	// Metrics first, so that a start that fails closed shows on a scrape.
	d.metrics, err = metrics.Serve(cfg.Metrics.Listen, d.reg, d.health, d.ready, log.Named("metrics"))
	if err != nil {
		d.shutdownAfterFailedStart(err)
		return err
	}
	if err := d.serveStatus(); err != nil {
		d.shutdownAfterFailedStart(err)
		return err
	}
	log.Info("serving metrics", "metrics", d.metrics.Addr())
	begun := time.Now()
	for name, err := range d.bus.Start(ctx) {
		var ce *ConfigError
		var ce2 *pluginhost.ChecksumError
		switch {
		case errors.As(err, &ce), errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.EACCES):
			d.shutdownAfterFailedStart(err)
			return err
		case errors.As(err, &ce2):
			log.Error("audit sink refused to start; its events are held until its plugin matches the pinned sha256", "sink", name)
		default:
			log.Error("audit sink did not start; retrying with backoff", "sink", name, "error", err)
		}
	}
	if err := d.awaitRequiredSinks(ctx, begun); err != nil {
		d.shutdownAfterFailedStart(err)
		return err
	}
	if cfg.Loader != nil {
		if err := d.startLoader(ctx, interrupt); err != nil {
			d.shutdownAfterFailedStart(err)
			return err
		}
	}
	if interrupt.Err() != nil {
		log.Warn("start interrupted between models: shutting down", "models_checked", len(d.models))
		return nil
	}
	if cfg.Vram != nil {
		if err := d.startVram(ctx, interrupt); err != nil {
			d.shutdownAfterFailedStart(err)
			return err
		}
	}
	d.state.set(status.Serving, "")
	d.refreshState()
	log.Info("vramward started", "worker", cfg.Worker.ID, "metrics", d.metrics.Addr(), "sinks", len(d.conns), "models", len(d.models), "version", d.version)
	return nil
}

// SinksDownError is a start that failed closed: the sinks audit.require
// names were not up within their plugins' start_timeout, so nothing that
// causes an event was done.
type SinksDownError struct {
	Require string
	Down    []string
	Waited  time.Duration
}

func (e *SinksDownError) Error() string {
	return fmt.Sprintf("audit.require = %q is not met: sinks not up after %s: %s; nothing was loaded, and this start's events are spooled for the next",
		e.Require, e.Waited.Round(time.Millisecond), strings.Join(e.Down, ", "))
}

// awaitRequiredSinks waits until audit.require is met, at most the longest
// start_timeout of the sinks' plugins counted from begun.
func (d *Daemon) awaitRequiredSinks(ctx context.Context, begun time.Time) error {
	wait := time.Duration(0)
	for _, c := range d.conns {
		wait = max(wait, c.spec.StartTimeout)
	}
	if wait <= 0 {
		wait = 5 * time.Second
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, down := d.bus.RequireMet()
		if ok {
			return nil
		}
		if time.Since(begun) >= wait {
			return &SinksDownError{Require: d.cfg.Audit.Require, Down: down, Waited: time.Since(begun)}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// failedStartDrain bounds delivery when a start failed: the sinks that are
// up get this long, the rest is spooled.
const failedStartDrain = time.Second

func (d *Daemon) shutdownAfterFailedStart(cause error) {
	d.stopVram()
	d.stopLoader()
	deadline := time.Now().Add(min(d.cfg.Audit.ShutdownTimeout, failedStartDrain))
	if err := d.bus.CloseBy("start failed: "+cause.Error(), deadline); err != nil {
		d.log.Error("shutdown after a failed start", "error", err)
	}
	pluginhost.StopAll()
	d.closeMetrics()
}

func (d *Daemon) closeMetrics() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if d.metrics != nil {
		_ = d.metrics.Close(ctx)
	}
	if d.statusSrv != nil {
		_ = d.statusSrv.Close(ctx)
	}
}

// emitAsync records a lifecycle event now and waits for a CRITICAL one
// (PluginChecksumMismatch) elsewhere: it may wait on the very sink that
// raised it.
func (d *Daemon) emitAsync(e audit.Event) {
	wait, err := d.bus.Submit(e)
	if err != nil {
		if !errors.Is(err, hostaudit.ErrClosed) {
			d.log.Error("audit event not recorded", "type", e.Type, "error", err)
		}
		return
	}
	go func() {
		if err := wait(context.Background()); err != nil {
			d.log.Error("CRITICAL audit event not durable on the required sinks", "type", e.Type, "error", err)
		}
	}()
}

// stopLoader ends the loader process: it holds nothing to flush.
func (d *Daemon) stopLoader() {
	if d.loader != nil {
		d.loader.Stop()
		d.loader = nil
	}
}

// Bus is the audit bus, for the worker.
func (d *Daemon) Bus() *hostaudit.Bus { return d.bus }

// MetricsAddr is where /metrics and /healthz are served.
func (d *Daemon) MetricsAddr() string { return d.metrics.Addr() }

// Reopen asks every sink to reopen its outputs (SIGHUP, after logrotate).
func (d *Daemon) Reopen(ctx context.Context) { d.bus.Reopen(ctx) }

// Shutdown is the one way the host stops, whatever asked: stop taking work,
// drain, HostStopped last, Shutdown RPC to every sink, end the plugins,
// spool what missed the deadline. It returns an error when something was
// spooled or a sink did not close cleanly.
func (d *Daemon) Shutdown(reason string) error {
	d.log.Info("shutting down", "reason", reason)
	d.state.set(status.Stopping, reason)
	d.stopVram()
	d.stopLoader()
	err := d.bus.Close(reason)
	// Every plugin client is managed: make sure no process outlives us,
	// whatever happened above.
	pluginhost.StopAll()
	d.closeMetrics()
	if err != nil {
		d.log.Error("shutdown incomplete", "error", err)
	} else {
		d.log.Info("shutdown complete: every sink flushed and closed")
	}
	return err
}

// Run starts the host and serves until SIGTERM, SIGINT or ctx ends, then
// shuts down through the one path. SIGHUP reopens the sinks. It returns
// the process exit code.
func Run(ctx context.Context, opts Options) int {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	// A closed stdout or stderr (`vramward run | head -1`, a pager quit)
	// must not kill the host mid-flight: with SIGPIPE caught, writes to them
	// fail instead, and the host goes on. Caught, not ignored, so that the
	// plugins it starts get the default disposition back.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	// SIGTERM or SIGINT during the start stops it between two models (not
	// after every model was loaded and sealed), then shuts down as usual.
	startCtx, interrupt := context.WithCancel(ctx)
	defer interrupt()
	startDone, startSignal := make(chan struct{}), make(chan string, 1)
	var watching sync.WaitGroup
	watching.Add(1)
	go func() {
		defer watching.Done()
		for {
			select {
			case s := <-sigs:
				if s == syscall.SIGHUP {
					continue // nothing to reopen yet
				}
				startSignal <- "signal " + s.String()
				interrupt()
				return
			case <-startDone:
				return
			}
		}
	}()
	d, err := startUntil(ctx, startCtx, opts)
	close(startDone)
	watching.Wait()
	if err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			opts.Logger.Error("configuration error:\n" + config.Format(ce.Diags))
		} else {
			opts.Logger.Error("start failed", "error", err)
		}
		return ExitStartup
	}
	reason := ""
	select {
	case reason = <-startSignal:
		d.log.Info("stopping: a signal came during the start", "reason", reason)
	default:
	}
	for reason == "" {
		select {
		case <-ctx.Done():
			reason = "context ended"
		case s := <-sigs:
			if s == syscall.SIGHUP {
				d.log.Info("SIGHUP: reopening audit sinks")
				d.Reopen(ctx)
				continue
			}
			reason = "signal " + s.String()
		}
	}
	// A second signal during shutdown is logged, not obeyed: the deadline
	// (audit.shutdown_timeout) already bounds the wait.
	go func() {
		for s := range sigs {
			d.log.Warn("already shutting down; ignoring signal", "signal", s.String())
		}
	}()
	if err := d.Shutdown(reason); err != nil {
		return ExitIncomplete
	}
	return ExitOK
}
