// Package status is the operator's view of a running host: what it holds,
// what it sealed and verified, which plugin and sink is healthy. The host
// serves it as JSON on a unix socket in its state dir (GET /v1/status), and
// `vramward status` reads it. Nothing secret is in it: no token, no key, no
// path outside the config.
package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// Status is the whole view.
type Status struct {
	Host    Host     `json:"host"`
	Plugins []Plugin `json:"plugins"`
	Sinks   []Sink   `json:"sinks"`
	Models  []Model  `json:"models"`
	Shards  []Shard  `json:"shards"`
	Trail   Trail    `json:"trail"`
}

// Host states.
const (
	Starting = "starting"
	Serving  = "serving"
	Degraded = "degraded"
	Stopping = "stopping"
)

// Host is the daemon itself.
type Host struct {
	WorkerID     string    `json:"worker_id"`
	Version      string    `json:"version"`
	ConfigSHA256 string    `json:"config_sha256"`
	Started      time.Time `json:"started"`
	State        string    `json:"state"`
	Reason       string    `json:"reason,omitempty"`
	Since        time.Time `json:"since"`
	// SecretErasure names what erases the copies signing leaves of an
	// epoch key: "runtime/secret", or "none: ..." saying why not.
	SecretErasure string `json:"secret_erasure"`
}

// Plugin is one plugin process.
type Plugin struct {
	Name          string `json:"name"`
	Kind          string `json:"kind"`
	PID           int    `json:"pid"`
	Running       bool   `json:"running"`
	Version       string `json:"version,omitempty"`
	Protocol      int    `json:"protocol"`
	PinnedSHA256  string `json:"pinned_sha256,omitempty"`
	RunningSHA256 string `json:"running_sha256,omitempty"`
	// Sandboxed says the host holds the process in its sandbox, as the
	// kernel shows it (/proc/PID/status) and the launcher recorded it;
	// Sandbox says what that is. The plugin's own claims are not taken.
	Sandboxed bool   `json:"sandboxed"`
	Sandbox   string `json:"sandbox,omitempty"`
	Restarts  int    `json:"restarts"`
	LastCrash string `json:"last_crash,omitempty"`
}

// Sink is one audit sink's delivery.
type Sink struct {
	Name string `json:"name"`
	// State is "up", "failing" or "down".
	State      string `json:"state"`
	LastError  string `json:"last_error,omitempty"`
	QueueDepth int    `json:"queue_depth"`
	SpoolBytes int64  `json:"spool_bytes"`
	LastSeq    uint64 `json:"last_acknowledged_seq"`
	// RecordLane: one-message emits (every CRITICAL one) travel on the
	// sink's record lane; false, on its gRPC stream.
	RecordLane bool              `json:"record_lane"`
	Failures   map[string]uint64 `json:"failures_by_severity"`
}

// Model is one configured model and what became of it.
type Model struct {
	Name    string `json:"name"`
	ShardID string `json:"shard_id"`
	Path    string `json:"path"`
	// State is "sealed", "checked" (accepted, not resident) or "refused".
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
}

// Shard is one sealed shard in device memory.
type Shard struct {
	Model        string     `json:"model"`
	ShardID      string     `json:"shard_id"`
	Device       uint32     `json:"device"`
	DeviceUUID   string     `json:"device_uuid"`
	Backend      string     `json:"backend"`
	Bytes        uint64     `json:"bytes"`
	Digest       string     `json:"digest"`
	SealedAt     time.Time  `json:"sealed_at"`
	LastVerified *time.Time `json:"last_verified,omitempty"`
	VerifyResult string     `json:"verify_result,omitempty"`
	// State is "sealed" (resident, its last verification passed or none
	// ran yet) or "failed" (its last verification did not pass and the
	// shard was kept, verify.on_failure = "keep").
	State string `json:"state"`
}

// Trail is where the audit log stands.
type Trail struct {
	Seq                uint64    `json:"seq"`
	Epoch              uint64    `json:"epoch"`
	LastCheckpointSeq  uint64    `json:"last_checkpoint_seq"`
	LastCheckpointSize uint64    `json:"last_checkpoint_tree_size"`
	LastCheckpointAt   time.Time `json:"last_checkpoint_at"`
}

// SocketName is the socket's name in the state dir.
const SocketName = "status.sock"

// Server serves the status on a unix socket.
type Server struct {
	srv  *http.Server
	path string
}

// Serve listens on a unix socket at path (0600: the state dir is 0700 too)
// and answers only peers running as this process's user (or root).
func Serve(path string, get func() Status, logger hclog.Logger) (*Server, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("status socket: %w", err)
	}
	old := unix.Umask(0o177)
	ln, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("status socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("status socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(get())
	})
	s := &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, path: path}
	go func() {
		if err := s.srv.Serve(peerListener{Listener: ln, refuse: RefusePeer}); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("status socket stopped", "path", path, "error", err)
		}
	}()
	return s, nil
}

// RefusePeer, when set, drops a connection from a process it names: the
// host's plugins (which run as the host's user) are refused.
var RefusePeer func(pid int32) bool

// peerListener drops connections from another user than this process's,
// and from the processes refuse names.
type peerListener struct {
	net.Listener
	refuse func(pid int32) bool
}

func (l peerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if uc, ok := c.(*net.UnixConn); ok {
			if raw, err := uc.SyscallConn(); err == nil {
				var cred *unix.Ucred
				_ = raw.Control(func(fd uintptr) { cred, _ = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
				if cred == nil || (cred.Uid != uint32(os.Getuid()) && cred.Uid != 0) || l.refuse != nil && l.refuse(cred.Pid) {
					c.Close()
					continue
				}
			}
		}
		return c, nil
	}
}

// Close stops serving and removes the socket.
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	os.Remove(s.path)
	return err
}

// Fetch reads the status from the socket at path.
func Fetch(ctx context.Context, path string) (Status, error) {
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://vramward/v1/status", nil)
	if err != nil {
		return Status{}, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return Status{}, fmt.Errorf("status socket %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Status{}, fmt.Errorf("status socket %s: %s", path, resp.Status)
	}
	var st Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return Status{}, fmt.Errorf("status socket %s: %w", path, err)
	}
	return st, nil
}
