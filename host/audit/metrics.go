package audit

import "github.com/prometheus/client_golang/prometheus"

type busMetrics struct {
	events     *prometheus.CounterVec
	queueDepth *prometheus.GaugeVec
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
	}
	for _, c := range []prometheus.Collector{m.events, m.queueDepth} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
