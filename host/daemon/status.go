package daemon

import (
	"encoding/hex"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/vramward/vramward/host/pluginhost"
	"github.com/vramward/vramward/host/status"
	"github.com/vramward/vramward/host/trail"
	"github.com/vramward/vramward/sdk/handshake"
)

// hostState is the daemon's own state for the status view and /healthz:
// starting, serving, degraded (and why, since when) or stopping.
type hostState struct {
	mu      sync.Mutex
	started time.Time
	state   string
	reason  string
	since   time.Time
}

func (h *hostState) set(state, reason string) { h.setSince(state, reason, time.Time{}) }

// setSince moves to state for reason, which began at since (now when zero).
// A reason that changes within one state keeps the state's since: the host
// has been degraded since its first cause, whatever was added later.
func (h *hostState) setSince(state, reason string, since time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state == state && h.reason == reason {
		return
	}
	if since.IsZero() {
		since = time.Now()
	}
	if h.state == state && !h.since.IsZero() && h.since.Before(since) {
		since = h.since
	}
	h.state, h.reason, h.since = state, reason, since.UTC()
}

func (h *hostState) get() (state, reason string, since time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state, h.reason, h.since
}

// refresh moves between serving and degraded as the sinks come and go.
func (d *Daemon) refreshState() (string, string, time.Time) {
	state, _, _ := d.state.get()
	if state == status.Serving || state == status.Degraded {
		if ok, why, since := d.readiness(); ok {
			d.state.set(status.Serving, "")
		} else {
			d.state.setSince(status.Degraded, why, since)
		}
	}
	return d.state.get()
}

// serveStatus serves the status view on state_dir/status.sock.
func (d *Daemon) serveStatus() error {
	status.RefusePeer = pluginhost.IsPluginProcess
	srv, err := status.Serve(filepath.Join(d.cfg.Worker.StateDir, status.SocketName), d.Status, d.log.Named("status"))
	if err != nil {
		return err
	}
	d.statusSrv = srv
	return nil
}

// Status is the operator's view of the host now.
func (d *Daemon) Status() status.Status {
	state, reason, since := d.refreshState()
	st := status.Status{Host: status.Host{WorkerID: d.cfg.Worker.ID, Version: d.version, ConfigSHA256: d.cfg.SHA256,
		Started: d.state.started, State: state, Reason: reason, Since: since, SecretErasure: trail.SecretErasure}}
	for _, c := range d.conns {
		c.mu.Lock()
		p := pluginStatus(c.spec, c.proc, c.version)
		p.Restarts = max(c.starts-1, 0)
		c.mu.Unlock()
		st.Plugins = append(st.Plugins, p)
	}
	if d.loader != nil {
		st.Plugins = append(st.Plugins, pluginStatus(d.loader.Spec, d.loader, ""))
	}
	if d.vram != nil {
		st.Plugins = append(st.Plugins, pluginStatus(d.vram.Spec, d.vram, d.vramVersion))
	}
	failures := d.failuresBySink()
	for _, s := range d.bus.Sinks() {
		st.Sinks = append(st.Sinks, status.Sink{Name: s.Name, State: s.State, LastError: s.LastError, QueueDepth: s.QueueDepth,
			SpoolBytes: s.SpoolBytes, LastSeq: s.LastSeq, RecordLane: s.Lane, Failures: failures[s.Name]})
	}
	sealed := map[string]bool{}
	if d.shards != nil {
		for _, sh := range d.shards.Sealed() {
			sealed[sh.ShardID] = true
			s := status.Shard{ShardID: sh.ShardID, Device: sh.Device, DeviceUUID: sh.DeviceUUID, Backend: sh.Backend, Bytes: sh.Bytes,
				Digest: hex.EncodeToString(sh.Digest[:]), SealedAt: sh.SealedAt}
			for _, r := range d.models {
				if r.Model.ShardID == sh.ShardID {
					s.Model = r.Model.Name
				}
			}
			s.State = "sealed"
			if v, ok := d.shards.LastVerified(sh.ShardID); ok {
				at := v.At
				s.LastVerified, s.VerifyResult = &at, v.Result
				if v.Result != "OK" {
					s.State = "failed"
				}
			}
			st.Shards = append(st.Shards, s)
		}
	}
	for _, r := range d.models {
		m := status.Model{Name: r.Model.Name, ShardID: r.Model.ShardID, Path: r.Model.Path}
		switch {
		case sealed[r.Model.ShardID]:
			m.State = "sealed"
		case r.Err != nil:
			m.State, m.Reason = "refused", r.Err.Error()
		default:
			m.State = "checked"
		}
		st.Models = append(st.Models, m)
	}
	t := d.bus.Trail()
	st.Trail = status.Trail{Seq: t.Seq, Epoch: t.Epoch, LastCheckpointSeq: t.LastCheckpointSeq, LastCheckpointSize: t.LastCheckpointTreeSize, LastCheckpointAt: t.LastCheckpointAt}
	return st
}

func pluginStatus(spec pluginhost.Spec, p *pluginhost.Process, version string) status.Plugin {
	out := status.Plugin{Name: spec.Name, Kind: spec.Kind, Version: version, Protocol: handshake.ProtocolVersion, PinnedSHA256: spec.SHA256}
	if p != nil {
		out.PID, out.Running, out.RunningSHA256 = p.Pid, !p.Exited(), p.SHA256
		// Measured again now: what the kernel holds for the process.
		enf := p.Observe()
		out.Sandboxed, out.Sandbox = enf.Sandboxed(), enf.Describe(p.Spec.Policy)
		if p.Crashed() {
			out.LastCrash = p.ExitReason()
		}
	}
	return out
}

// failuresBySink reads the failure counters the sinks' clients and the bus
// keep, by sink and severity.
func (d *Daemon) failuresBySink() map[string]map[string]uint64 {
	out := map[string]map[string]uint64{}
	mfs, err := d.reg.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		if mf.GetName() != "vramward_audit_emit_failures_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			sink, sev := label(m, "sink"), label(m, "severity")
			if out[sink] == nil {
				out[sink] = map[string]uint64{}
			}
			out[sink][sev] += uint64(m.GetCounter().GetValue())
		}
	}
	for _, byS := range out {
		for k, v := range byS {
			if v == 0 {
				delete(byS, k)
			}
		}
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func (d *Daemon) ready() (bool, string) {
	ok, why, _ := d.readiness()
	return ok, why
}

// readiness says what keeps the host from serving and since when: the
// earliest of its causes began then (zero when unknown).
func (d *Daemon) readiness() (bool, string, time.Time) {
	var why []string
	var since time.Time
	began := func(t time.Time) {
		if !t.IsZero() && (since.IsZero() || t.Before(since)) {
			since = t
		}
	}
	if at, err := d.bus.StateHealth(); err != nil {
		why = append(why, "the log's state cannot be written ("+err.Error()+"): records are held back, CRITICAL emits fail")
		began(at)
	}
	var down, failing []string
	for _, c := range d.conns {
		if !c.up() {
			down = append(down, c.Name())
		}
	}
	for _, s := range d.bus.Sinks() {
		began(s.Since)
		switch {
		case s.State == "failing":
			failing = append(failing, s.Name+" ("+s.LastError+")")
		case s.State == "down" && !slices.Contains(down, s.Name):
			down = append(down, s.Name)
		}
	}
	if len(down) > 0 {
		why = append(why, "audit sinks not up: "+strings.Join(down, ", "))
	}
	if len(failing) > 0 {
		why = append(why, "audit sinks failing: "+strings.Join(failing, ", "))
	}
	if len(why) > 0 {
		return false, strings.Join(why, "; "), since
	}
	return true, "", time.Time{}
}

// health is /healthz's one line: what is degraded, and since when.
func (d *Daemon) health() string {
	state, reason, since := d.refreshState()
	if reason == "" {
		return state
	}
	return state + " since " + since.Format(time.RFC3339) + ": " + reason
}
