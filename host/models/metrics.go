package models

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vramward/vramward/sdk/vram"
)

// Metrics are the seal and GPU series. Every series carries the backend,
// so an emulated device is never read as a GPU.
type Metrics struct {
	verifications *prometheus.CounterVec
	verifyTime    prometheus.Histogram
	sealedBytes   *prometheus.GaugeVec
	memUsed       *prometheus.GaugeVec
	memTotal      *prometheus.GaugeVec
}

// NewMetrics registers the worker's metrics.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		verifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vramward_seal_verifications_total",
			Help: "Seal verifications by result: OK, DIGEST_MISMATCH, SIGNATURE_INVALID, NOT_RESIDENT or ERROR.",
		}, []string{"result"}),
		verifyTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "vramward_seal_verify_duration_seconds",
			Help:    "Time to verify one seal (signature, read-back, digest).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
		sealedBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vramward_sealed_bytes",
			Help: "Bytes of sealed shards resident on a device.",
		}, []string{"device", "backend"}),
		memUsed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vramward_gpu_memory_used_bytes",
			Help: "Device memory in use, as the VRAM backend reports it.",
		}, []string{"device", "uuid", "backend"}),
		memTotal: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vramward_gpu_memory_total_bytes",
			Help: "Device memory in all, as the VRAM backend reports it.",
		}, []string{"device", "uuid", "backend"}),
	}
	for _, c := range []prometheus.Collector{m.verifications, m.verifyTime, m.sealedBytes, m.memUsed, m.memTotal} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, r := range []string{"OK", "DIGEST_MISMATCH", "SIGNATURE_INVALID", "NOT_RESIDENT", "ERROR"} {
		m.verifications.WithLabelValues(r)
	}
	return m, nil
}

func (m *Metrics) devices(stats []vram.DeviceStats) {
	if m == nil {
		return
	}
	for _, s := range stats {
		dev := strconv.Itoa(int(s.Device.Index))
		m.sealedBytes.WithLabelValues(dev, s.Device.Backend).Set(float64(s.SealedBytes))
		m.memUsed.WithLabelValues(dev, s.Device.UUID, s.Device.Backend).Set(float64(s.UsedBytes))
		m.memTotal.WithLabelValues(dev, s.Device.UUID, s.Device.Backend).Set(float64(s.Device.TotalBytes))
	}
}
