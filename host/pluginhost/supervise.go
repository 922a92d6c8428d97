package pluginhost

import (
	"time"

	"github.com/vramward/vramward/internal/backoff"
	"github.com/vramward/vramward/sdk/audit"
)

// One restart policy for every plugin kind. A plugin process that exited
// on its own (a sink, the loader, the VRAM backend) is recorded as
// PluginCrashed, once, by CrashEvent, and started again; a start that
// fails is tried again after RestartMin, doubling to RestartMax, until one
// succeeds. Each kind's loop decides when a restart is due (a delivery
// that fails, a check the loader died in, the verify ticker), and asks its
// Restarts how long to wait.
const (
	RestartMin = 100 * time.Millisecond
	RestartMax = 30 * time.Second
)

// Restarts spaces the starts of one plugin after a crash.
type Restarts struct{ b backoff.Backoff }

// NewRestarts is the policy's backoff; min and max, when not zero, replace
// RestartMin and RestartMax (tests use short ones).
func NewRestarts(min, max time.Duration) *Restarts {
	if min <= 0 {
		min = RestartMin
	}
	if max <= 0 {
		max = RestartMax
	}
	return &Restarts{b: backoff.Backoff{Min: min, Max: max}}
}

// Next is how long to wait before the next start.
func (r *Restarts) Next() time.Duration { return r.b.Next() }

// Reset starts the backoff over once the plugin runs again.
func (r *Restarts) Reset() { r.b.Reset() }

// Wait sleeps Next unless stop is closed first; it reports whether to go
// on.
func (r *Restarts) Wait(stop <-chan struct{}) bool {
	t := time.NewTimer(r.Next())
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
		return false
	}
}

// CrashEvent is the PluginCrashed record of p, which exited without being
// asked to; version is what the plugin reported at its start. False while
// p runs, or when the host ended it.
func CrashEvent(p *Process, version string) (audit.Event, bool) {
	if p == nil || !p.Crashed() {
		return audit.Event{}, false
	}
	ev, err := audit.Make(audit.Actor{}, audit.PluginCrashedFields{Plugin: p.Spec.Name, Kind: p.Spec.Kind, Version: version,
		PID: uint64(p.Pid), ExitReason: p.ExitReason()})
	return ev, err == nil
}
