package sinkclient

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vramward/vramward/sdk/audit"
)

// Metrics are the client-side counters of every sink failure. The host
// creates one set and hands it to every sink's Client; there is no way to use
// a sink from the host without them.
type Metrics struct {
	emitFailures         *prometheus.CounterVec
	criticalEmitFailures *prometheus.CounterVec
	flushFailures        *prometheus.CounterVec
	shortened            *prometheus.CounterVec
	emitDuration         *prometheus.HistogramVec
}

// NewMetrics registers the sink metrics with reg. Registering twice with the
// same registry returns the collectors already there.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		emitFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vramward_audit_emit_failures_total",
			Help: "Audit events a sink failed to accept, by sink and event severity.",
		}, []string{"sink", "severity"}),
		criticalEmitFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vramward_audit_critical_emit_failures_total",
			Help: "CRITICAL audit events a sink failed to make durable.",
		}, []string{"sink"}),
		flushFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vramward_audit_flush_failures_total",
			Help: "Failed flushes (including the flush of a shutdown) by sink.",
		}, []string{"sink"}),
		shortened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vramward_audit_shortened_events_total",
			Help: "Audit events a sink stored shortened (envelope kept, fields left out, marked as such) because they exceeded its output's size limit.",
		}, []string{"sink"}),
		emitDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vramward_audit_emit_duration_seconds",
			Help:    "Time of one emit RPC (single event or batch) to a sink, labelled with the highest severity it carried.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"sink", "severity"}),
	}
	var err error
	if m.emitFailures, err = register(reg, m.emitFailures); err != nil {
		return nil, err
	}
	if m.criticalEmitFailures, err = register(reg, m.criticalEmitFailures); err != nil {
		return nil, err
	}
	if m.flushFailures, err = register(reg, m.flushFailures); err != nil {
		return nil, err
	}
	if m.shortened, err = register(reg, m.shortened); err != nil {
		return nil, err
	}
	if m.emitDuration, err = register(reg, m.emitDuration); err != nil {
		return nil, err
	}
	return m, nil
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

// InitSink creates every series of a sink at zero, so that rates and alerts
// see the sink from the first scrape, before its plugin ever started.
func (m *Metrics) InitSink(sink string) { m.initSink(sink) }

// CountUndelivered counts n events of severity sev that the host could not
// deliver to sink for a reason it decided itself (the sink is down, never
// started, failing or backlogged past a deadline, or the host gave up at
// shutdown), in the same series as the failures a Client counts.
func (m *Metrics) CountUndelivered(sink string, sev audit.Severity, n int) {
	if n <= 0 || !sev.Valid() {
		return
	}
	m.emitFailures.WithLabelValues(sink, sev.String()).Add(float64(n))
	if sev == audit.Critical {
		m.criticalEmitFailures.WithLabelValues(sink).Add(float64(n))
	}
}

func (m *Metrics) initSink(sink string) {
	for _, sev := range audit.Severities() {
		m.emitFailures.WithLabelValues(sink, sev.String())
	}
	m.criticalEmitFailures.WithLabelValues(sink)
	m.flushFailures.WithLabelValues(sink)
	m.shortened.WithLabelValues(sink)
}
