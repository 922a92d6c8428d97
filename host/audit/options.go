package audit

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vramward/vramward/host/trail"
	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audit/sinkclient"
)

// SinkConn connects the bus to one sink's plugin. The bus calls Start to
// (re)launch and configure it, Crash to learn whether the plugin process
// ended on its own, and Stop to end it after its Shutdown RPC.
type SinkConn interface {
	Name() string
	Start(ctx context.Context) (*sinkclient.Client, error)
	// Crash returns a PluginCrashed event when the plugin process exited
	// without being asked to, and false while it runs.
	Crash() (audit.Event, bool)
	Stop()
	// OnNode says the sink keeps its copy in a file on this node, which a
	// start after a crash rolls the log forward over (Options.SinkTrails).
	// A sink whose copy is elsewhere (syslog) gets a checkpoint only once
	// the state holding it is durable.
	OnNode() bool
}

// Options configure a bus.
type Options struct {
	ServiceID string
	Actor     audit.Actor
	StateDir  string
	// Origin names the log in its checkpoints (trail.Origin of the worker).
	Origin          string
	Limits          trail.Limits
	Require         string // "all" or "any"
	QueueSize       int
	SpoolMaxBytes   int64 // each sink's spool file; 0: 1 GiB
	BatchSize       int
	BatchWait       time.Duration
	CriticalTimeout time.Duration
	ShutdownTimeout time.Duration
	// RestartMin and RestartMax replace pluginhost's restart policy
	// bounds when set (tests).
	RestartMin, RestartMax time.Duration
	Logger                 hclog.Logger
	Registerer             prometheus.Registerer
	// SinkMetrics are the failure counters the sinks' clients share; the
	// bus counts in them the failures it decides itself. Made from
	// Registerer when nil.
	SinkMetrics *sinkclient.Metrics
	// Witnesses cosign every checkpoint off the node.
	Witnesses []Witness
	// SinkTrails names the trail files the sinks write on this node. A
	// start after a crash reads them to continue the log past a state a
	// power cut left behind them (called only then).
	SinkTrails func() []string
}

// ErrClosed is returned by Emit after shutdown began.
var ErrClosed = errors.New("audit bus is shut down")

// busLock is the bus's lock, a mutex that a CRITICAL emit can stop waiting
// for at its deadline.
type busLock chan struct{}

func (l busLock) Lock()   { l <- struct{}{} }
func (l busLock) Unlock() { <-l }

func (l busLock) lockBy(deadline <-chan time.Time) bool {
	select {
	case l <- struct{}{}:
		return true
	case <-deadline:
		return false
	}
}
