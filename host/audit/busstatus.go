package audit

import "time"

// What the bus tells the daemon about its sinks and its log (readiness,
// the status view).

// RequireMet reports whether enough sinks are up for audit.require (all,
// or any one), and which are not.
func (b *Bus) RequireMet() (bool, []string) {
	var down []string
	for _, s := range b.sinks {
		if !s.isUp() {
			down = append(down, s.conn.Name())
		}
	}
	if b.opts.Require == "any" {
		return len(down) < len(b.sinks), down
	}
	return len(down) == 0, down
}

// Depth returns the events waiting for each sink.
func (b *Bus) Depth() map[string]int {
	out := map[string]int{}
	for _, s := range b.sinks {
		out[s.conn.Name()] = s.q.size()
	}
	return out
}

// Up reports whether every sink's plugin is running and configured.
func (b *Bus) Up() bool {
	for _, s := range b.sinks {
		if !s.isUp() {
			return false
		}
	}
	return true
}

// SinkState is one sink's delivery, for the status view.
type SinkState struct {
	Name  string
	State string // "up", "failing" (its plugin runs) or "down"
	// Since is when the sink began failing (zero while up).
	Since      time.Time
	LastError  string
	QueueDepth int
	SpoolBytes int64
	LastSeq    uint64 // the last seq the sink acknowledged
	// Lane says one-message emits (every CRITICAL one) travel on the
	// sink's record lane rather than its gRPC stream.
	Lane bool
}

// Sinks reports every sink's delivery.
func (b *Bus) Sinks() []SinkState {
	out := make([]SinkState, 0, len(b.sinks))
	for _, s := range b.sinks {
		st := SinkState{Name: s.conn.Name(), QueueDepth: s.q.size(), SpoolBytes: s.q.spoolBytes()}
		if c := s.current(); c != nil {
			st.Lane = c.Lane()
		}
		s.mu.Lock()
		st.LastSeq = s.acked
		failing, lastErr, since := s.failing, s.lastErr, s.failingSince
		s.mu.Unlock()
		switch {
		case !s.running():
			st.State = "down"
		case failing:
			st.State = "failing"
		default:
			st.State = "up"
		}
		if st.State != "up" {
			st.Since = since
		}
		if lastErr != nil && st.State != "up" {
			st.LastError = lastErr.Error()
		}
		out = append(out, st)
	}
	return out
}

// TrailState is where the log stands, for the status view.
type TrailState struct {
	Seq, Epoch                                uint64
	LastCheckpointSeq, LastCheckpointTreeSize uint64
	LastCheckpointAt                          time.Time
}

// Trail reports where the log stands.
func (b *Bus) Trail() TrailState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seq.trail()
}

// StateHealth reports when the current failure to write the log's state
// began and its last error; a nil error while the state is written.
func (b *Bus) StateHealth() (since time.Time, err error) { return b.seq.health() }
