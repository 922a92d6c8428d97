// Package pluginhost launches plugin binaries with go-plugin: gRPC only,
// AutoMTLS, the binary's SHA-256 checked when the config pins one, a short
// start timeout, each plugin's log lines forwarded into the host's log under
// its name, and plugin_up / plugin_restarts_total kept current.
package pluginhost

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/handshake"
)

// Spec is what the config says about one plugin.
type Spec struct {
	Name         string
	Kind         string
	Path         string
	SHA256       string // "" when not pinned
	StartTimeout time.Duration
	// Policy is what the host lets the process reach (System is added);
	// the zero Policy lets it reach System and its own temporary directory.
	Policy Policy
	// User, when set, is the account the plugin runs as instead of the
	// host's (a host running as root only).
	User *Account
	// Limits are the plugin's cgroup limits.
	Limits Limits
}

// Account is a user and group id a plugin runs as.
type Account struct {
	UID int `json:"uid"`
	GID int `json:"gid"`
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
	up        *prometheus.GaugeVec
	restarts  *prometheus.CounterVec
	sandboxed *prometheus.GaugeVec
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
		sandboxed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vramward_plugin_sandboxed",
			Help: "1 while the host holds the plugin's process in its sandbox (no capability, no_new_privs, seccomp, Landlock), as /proc shows it, else 0.",
		}, []string{"plugin"}),
	}
	for _, c := range []prometheus.Collector{m.up, m.restarts, m.sandboxed} {
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
	Spec Spec
	Raw  any // the dispensed client half
	Pid  int // the plugin's own process (in the host's numbering)
	// SHA256 is the binary that runs, hashed through the descriptor that
	// was executed.
	SHA256 string
	// Enforced is the sandbox the host applied, as the launcher recorded
	// it and the kernel shows it.
	Enforced Enforced
	client   *plugin.Client
	run      *groupRunner
	metrics  *Metrics
	// stopping is set when the host ends the process itself, so that its
	// exit is not reported as a crash.
	stopping atomic.Bool
	once     sync.Once
}

// pluginEnv lists the host's environment variables a plugin may see: what
// the Go runtime, the C library and the CUDA driver read, and the test hook
// of vram-cuda's tamper build (a release build has no reader for it).
// Everything else, the worker token above all, stays in the host.
var pluginEnv = []string{
	"PATH", "TMPDIR", "TZ", "LANG", "LC_ALL", "LC_CTYPE",
	"GOGC", "GOMEMLIMIT", "GOMAXPROCS", "GOTRACEBACK", "GODEBUG", "GOCOVERDIR",
	"LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "NVIDIA_VISIBLE_DEVICES",
	"VRAMWARD_TAMPER_FILE",
}

// Environ is the environment a plugin starts with: the allowed variables
// the host has, and the plugin log level.
func (l *Launcher) Environ() []string {
	var env []string
	for _, k := range pluginEnv {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return append(env, "VRAMWARD_PLUGIN_LOG_LEVEL="+l.LogLevel)
}

// Launch starts spec's binary and dispenses kind through p (the client half
// of that plugin kind). The binary is opened once, hashed through that
// descriptor when pinned, and executed through it; on a mismatch Launch
// returns a *ChecksumError without executing anything. Start is bounded by
// spec.StartTimeout even when the plugin or its children keep their pipes
// open, and nothing of a plugin that failed to start is left running.
// Ending ctx ends a start in progress.
func (l *Launcher) Launch(ctx context.Context, spec Spec, p plugin.Plugin) (*Process, error) {
	var sockets *plugin.UnixSocketConfig
	if spec.User != nil {
		if os.Geteuid() != 0 {
			return nil, fmt.Errorf("start plugin %s: it is to run as uid %d, which only a host running as root can do", spec.Name, spec.User.UID)
		}
		// The directory go-plugin makes for the plugin's socket, and the
		// socket, are its group's too, so that the plugin can serve there.
		sockets = &plugin.UnixSocketConfig{Group: strconv.Itoa(spec.User.GID)}
	}
	bin, sum, err := openBinary(spec)
	if err != nil {
		return nil, err
	}
	timeout := spec.StartTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	var run atomic.Pointer[groupRunner]
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  handshake.Config,
		VersionedPlugins: map[int]plugin.PluginSet{handshake.ProtocolVersion: {spec.Kind: p}},
		RunnerFunc: func(log hclog.Logger, cmd *exec.Cmd, _ string) (runner.Runner, error) {
			cmd.Env = append(l.Environ(), cmd.Env...)
			laneEnv := ""
			if lm, ok := p.(laneMaker); ok {
				laneEnv = lm.LaneEnv()
			}
			r, err := newGroupRunner(log, spec, bin, cmd, laneEnv)
			if err != nil {
				return nil, err
			}
			run.Store(r)
			return r, nil
		},
		SkipHostEnv:      true,
		UnixSocketConfig: sockets,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Managed:          true,
		StartTimeout:     timeout,
		Logger:           l.Logger.Named(spec.Name),
		// go-plugin lets a plugin send the host messages of up to 2 GiB;
		// a hostile plugin could make the host allocate that much.
		GRPCDialOptions: []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxRecvBytes)), grpc.WithInitialWindowSize(handshake.WindowBytes), grpc.WithInitialConnWindowSize(handshake.WindowBytes)},
		// Plugins log through hclog on stderr; anything on stdout after the
		// handshake is noise and must not block the plugin.
		SyncStdout: io.Discard,
	})
	rpc, err := startClient(ctx, client, &run)
	if run.Load() == nil {
		bin.Close() // go-plugin failed before it asked for a runner
	}
	if err != nil {
		client.Kill()
		return nil, fmt.Errorf("start plugin %s (%s): %w", spec.Name, spec.Path, err)
	}
	raw, err := rpc.Dispense(spec.Kind)
	if err != nil {
		client.Kill()
		return nil, fmt.Errorf("plugin %s: dispense %s: %w", spec.Name, spec.Kind, err)
	}
	r := run.Load()
	if lu, ok := raw.(laneUser); ok && r.laneHost != nil {
		lu.AttachLane(r.laneHost)
	}
	enf := r.enforced
	if err := observe(r.plugin, &enf); err != nil {
		enf.Error = "cannot read /proc/" + fmt.Sprint(r.plugin) + "/status: " + err.Error()
	}
	proc := &Process{Spec: spec, Raw: raw, Pid: r.plugin, SHA256: sum, Enforced: enf, client: client, run: r, metrics: l.Metrics}
	live.Store(proc, struct{}{})
	if l.Metrics != nil {
		l.Metrics.up.WithLabelValues(spec.Name, spec.Kind).Set(1)
		l.Metrics.restarts.WithLabelValues(spec.Name)
	}
	return proc, nil
}

// startClient runs go-plugin's start, which takes no context: when ctx ends
// first, the plugin's group is killed, which ends the start at once.
func startClient(ctx context.Context, client *plugin.Client, run *atomic.Pointer[groupRunner]) (plugin.ClientProtocol, error) {
	type result struct {
		rpc plugin.ClientProtocol
		err error
	}
	done := make(chan result, 1)
	go func() {
		rpc, err := client.Client()
		done <- result{rpc, err}
	}()
	select {
	case res := <-done:
		return res.rpc, res.err
	case <-ctx.Done():
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if r := run.Load(); r != nil {
			r.killGroup()
		}
		select {
		case res := <-done:
			if res.err == nil {
				client.Kill()
			}
			return nil, fmt.Errorf("plugin start abandoned: %w", context.Cause(ctx))
		case <-tick.C: // go-plugin had not started the process yet
		}
	}
}

// MaxRecvBytes caps one gRPC message a plugin sends the host.
const MaxRecvBytes = 16 << 20

// Started records a plugin process that was configured: its PluginStarted
// event and vramward_plugin_sandboxed, both saying what the host enforced
// (the plugin's own claim about sandboxing itself is only appended).
func (m *Metrics) Started(p *Process, version string, ownSandbox bool, ownDetail string) (audit.Event, error) {
	sandboxed := p.Enforced.Sandboxed()
	sandbox := p.Enforced.Describe(p.Spec.Policy)
	if ownSandbox {
		sandbox += "; the plugin's own: " + ownDetail
	}
	if m != nil {
		v := 0.0
		if sandboxed {
			v = 1
		}
		m.sandboxed.WithLabelValues(p.Spec.Name).Set(v)
	}
	return audit.Make(audit.Actor{}, audit.PluginStartedFields{Plugin: p.Spec.Name, Kind: p.Spec.Kind, Version: version,
		PID: uint64(p.Pid), Sandboxed: sandboxed, Sandbox: sandbox})
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
	return p.run.exitReason()
}

// Stop ends the process: go-plugin's graceful close, then a kill after two
// seconds. Callers of a sink send its Shutdown RPC first.
func (p *Process) Stop() {
	p.once.Do(func() {
		p.stopping.Store(true)
		p.kill()
		p.metrics.MarkDown(p.Spec)
	})
}

// MarkCrashed records that the process is gone (plugin_up 0) and makes sure
// nothing of it is left.
func (p *Process) MarkCrashed() {
	p.metrics.MarkDown(p.Spec)
	p.kill()
}

// killGrace bounds go-plugin's Kill, whose graceful close sends the plugin
// an RPC without a deadline: a frozen plugin (SIGSTOP, a deadlock) would
// hold the host for ever. Past it the plugin's group is killed, which ends
// that RPC.
const killGrace = 3 * time.Second

func (p *Process) kill() {
	defer live.Delete(p)
	done := make(chan struct{})
	go func() {
		p.client.Kill()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-time.After(killGrace):
	}
	p.run.killGroup()
	<-done
}

// live holds every process Launch started and nobody stopped yet.
var live sync.Map

// StopAll ends every plugin process still running, each within killGrace:
// the last step of every way out of the host.
func StopAll() {
	var wg sync.WaitGroup
	live.Range(func(k, _ any) bool {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k.(*Process).Stop()
		}()
		return true
	})
	wg.Wait()
	// Anything go-plugin still tracks is dead by now; this only reaps it.
	plugin.CleanupClients()
}
