package audit

import "github.com/prometheus/client_golang/prometheus"

type busMetrics struct {
	events        *prometheus.CounterVec
	queueDepth    *prometheus.GaugeVec
	spoolLost     *prometheus.CounterVec
	stateFailures prometheus.Counter
	stateDegraded prometheus.Gauge
}

func newBusMetrics(reg prometheus.Registerer) (*busMetrics, error) {
	m := &busMetrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vramward_audit_events_total",
			Help: "Audit events recorded by the host, by type and severity.",
		}, []string{"type", "severity"}),
		queueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vramward_audit_queue_depth",
			Help: "Events waiting for delivery to a sink, in memory and in its spool.",
		}, []string{"sink"}),
		spoolLost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vramward_audit_spool_damaged_records_total",
			Help: "Records found damaged in a sink's spool at start (a torn tail cut off, frames failing their checksum): that sink's copy lacks them.",
		}, []string{"sink"}),
		stateFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vramward_audit_state_write_failures_total",
			Help: "Failed writes or fdatasyncs of the log's state in state_dir.",
		}),
		stateDegraded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vramward_audit_state_degraded",
			Help: "1 while the log's state cannot be written: records are held back from every sink and CRITICAL emits fail.",
		}),
	}
	for _, c := range []prometheus.Collector{m.events, m.queueDepth, m.spoolLost, m.stateFailures, m.stateDegraded} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
