// Package pluginhost launches plugin binaries with go-plugin: gRPC only,
// AutoMTLS, the binary's SHA-256 checked when the config pins one, a short
// start timeout, each plugin's log lines forwarded into the host's log under
// its name, and plugin_up / plugin_restarts_total kept current.
package pluginhost

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vramward/vramward/sdk/handshake"
)

// Spec is what the config says about one plugin.
type Spec struct {
	Name         string
	Kind         string
	Path         string
	SHA256       string // "" when not pinned
	StartTimeout time.Duration
}

// ChecksumError is returned when a pinned binary's SHA-256 differs: the
// binary is refused and never executed.
type ChecksumError struct {
	Plugin, Path     string
	Expected, Actual string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("plugin %s: %s has sha256 %s, the config pins %s; refusing to run it", e.Plugin, e.Path, e.Actual, e.Expected)
}

// Metrics are the plugin lifecycle series.
type Metrics struct {
	up       *prometheus.GaugeVec
	restarts *prometheus.CounterVec
}

// NewMetrics registers vramward_plugin_up and vramward_plugin_restarts_total.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vramward_plugin_up",
			Help: "1 while the plugin process is running and answered its handshake, else 0.",
		}, []string{"plugin", "kind"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vramward_plugin_restarts_total",
			Help: "Restarts of a plugin process after it crashed or stopped answering.",
		}, []string{"plugin"}),
	}
	for _, c := range []prometheus.Collector{m.up, m.restarts} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Launcher starts plugin processes.
type Launcher struct {
	Logger  hclog.Logger
	Metrics *Metrics
	// LogLevel is passed to plugins (VRAMWARD_PLUGIN_LOG_LEVEL).
	LogLevel string
}

// Process is one running plugin process.
type Process struct {
	Spec    Spec
	Raw     any // the dispensed client half
	Pid     int
	client  *plugin.Client
	cmd     *exec.Cmd
	metrics *Metrics
	// stopping is set when the host ends the process itself, so that its
	// exit is not reported as a crash.
	stopping atomic.Bool
	once     sync.Once
}

// Launch starts spec's binary and dispenses kind through p (the client half
// of that plugin kind). On a pinned checksum mismatch it returns a
// *ChecksumError without executing the binary.
func (l *Launcher) Launch(spec Spec, p plugin.Plugin) (*Process, error) {
	var secure *plugin.SecureConfig
	if spec.SHA256 != "" {
		want, err := hex.DecodeString(spec.SHA256)
		if err != nil {
			return nil, fmt.Errorf("plugin %s: sha256: %w", spec.Name, err)
		}
		secure = &plugin.SecureConfig{Checksum: want, Hash: sha256.New()}
	}
	cmd := exec.Command(spec.Path)
	cmd.Env = append(os.Environ(), "VRAMWARD_PLUGIN_LOG_LEVEL="+l.LogLevel)
	timeout := spec.StartTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  handshake.Config,
		VersionedPlugins: map[int]plugin.PluginSet{handshake.ProtocolVersion: {spec.Kind: p}},
		Cmd:              cmd,
		SecureConfig:     secure,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Managed:          true,
		StartTimeout:     timeout,
		Logger:           l.Logger.Named(spec.Name),
		// Plugins log through hclog on stderr; anything on stdout after the
		// handshake is noise and must not block the plugin.
		SyncStdout: io.Discard,
	})
	rpc, err := client.Client()
	if err != nil {
		client.Kill()
		if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
			return nil, &ChecksumError{Plugin: spec.Name, Path: spec.Path, Expected: spec.SHA256, Actual: fileSHA256(spec.Path)}
		}
		return nil, fmt.Errorf("start plugin %s (%s): %w", spec.Name, spec.Path, err)
	}
	raw, err := rpc.Dispense(spec.Kind)
	if err != nil {
		client.Kill()
		return nil, fmt.Errorf("plugin %s: dispense %s: %w", spec.Name, spec.Kind, err)
	}
	proc := &Process{Spec: spec, Raw: raw, client: client, cmd: cmd, metrics: l.Metrics}
	if rc := client.ReattachConfig(); rc != nil {
		proc.Pid = rc.Pid
	}
	if l.Metrics != nil {
		l.Metrics.up.WithLabelValues(spec.Name, spec.Kind).Set(1)
		l.Metrics.restarts.WithLabelValues(spec.Name)
	}
	return proc, nil
}

// CountRestart records a restart of the named plugin.
func (m *Metrics) CountRestart(name string) {
	if m != nil {
		m.restarts.WithLabelValues(name).Inc()
	}
}

// MarkDown sets plugin_up to 0, for a plugin that failed to start.
func (m *Metrics) MarkDown(spec Spec) {
	if m != nil {
		m.up.WithLabelValues(spec.Name, spec.Kind).Set(0)
	}
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool { return p.client.Exited() }

// Crashed reports whether the process ended without the host asking.
func (p *Process) Crashed() bool { return !p.stopping.Load() && p.client.Exited() }

// ExitReason says how the process ended ("exit status 2", "signal:
// killed"), or "running".
func (p *Process) ExitReason() string {
	if !p.client.Exited() {
		return "running"
	}
	// go-plugin waited for cmd and set Exited after, under its lock.
	if st := p.cmd.ProcessState; st != nil {
		return st.String()
	}
	return "exited"
}

// Stop ends the process: go-plugin's graceful close, then a kill after two
// seconds. Callers of a sink send its Shutdown RPC first.
func (p *Process) Stop() {
	p.once.Do(func() {
		p.stopping.Store(true)
		p.client.Kill()
		p.metrics.MarkDown(p.Spec)
	})
}

// MarkCrashed records that the process is gone (plugin_up 0) and makes sure
// nothing of it is left.
func (p *Process) MarkCrashed() {
	p.metrics.MarkDown(p.Spec)
	p.client.Kill()
}

func fileSHA256(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unreadable: " + err.Error()
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "unreadable: " + err.Error()
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Backoff is the capped exponential delay between restarts.
type Backoff struct {
	Min, Max time.Duration
	next     time.Duration
}

// Next returns the delay before the next attempt.
func (b *Backoff) Next() time.Duration {
	if b.next == 0 {
		b.next = b.Min
	}
	d := b.next
	b.next = min(b.next*2, b.Max)
	return d
}

// Reset starts over after a success.
func (b *Backoff) Reset() { b.next = 0 }
