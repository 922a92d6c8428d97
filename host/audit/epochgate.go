package audit

import (
	"sync"
	"time"

	"github.com/vramward/vramward/sdk/audit"
)

// epochGate holds the records from an epoch's end on until the state that
// holds the new epoch's key is durable. A start after a power cut rolls
// the log forward over a sink's checkpoints (rollforward.go), but not past
// one that certifies a key no state on disk holds: the log could not sign
// on. Holding them costs the records after an epoch's end one fdatasync,
// once an epoch; an emitter waits for the disk under the bus's lock only
// when the gate already holds a queue's worth (awaitGate).
type epochGate struct {
	shut    bool           // under the bus's lock, as is records
	records []audit.Record // in seq order, the epoch's last checkpoint first
	wait    *gateWait      // the shut gate's answer
}

// gateWait is one shutting's answer from the state writer.
type gateWait struct {
	done     chan struct{}
	mu       sync.Mutex
	answered bool
	err      error
}

// pass takes a step's records, in seq order, through the gate: what it
// holds and has been released goes first; while it is shut, the records
// join what it holds and nothing passes. endsEpoch says the records end
// with a checkpoint that ends an epoch: the gate shuts on them.
func (s *sequencer) pass(records []audit.Record, endsEpoch bool) []audit.Record {
	g := &s.gate
	if g.shut {
		w := g.wait
		w.mu.Lock()
		answered, err := w.answered, w.err
		w.mu.Unlock()
		if !answered {
			g.records = append(g.records, records...)
			return nil
		}
		held := g.records
		g.shut, g.records, g.wait = false, nil, nil
		if err != nil && s.failing() != nil {
			// The save holding the new key failed: they wait with the
			// records a failing state holds back, ahead of them, until a
			// save succeeds (a sync one, which covers the new key too).
			s.held = append(append(held, records...), s.held...)
			return nil
		}
		records = append(held, records...)
	}
	if endsEpoch && len(records) > 0 {
		w := &gateWait{done: make(chan struct{})}
		g.shut, g.records, g.wait = true, records, w
		durable := s.state.wait(records[len(records)-1].Seq)
		go func() {
			err := <-durable
			w.mu.Lock()
			w.answered, w.err = true, err
			w.mu.Unlock()
			close(w.done)
			if s.gateOpened != nil {
				s.gateOpened()
			}
		}()
		return nil
	}
	return records
}

// awaitGate waits until deadline for a shut gate's state to be durable,
// and says whether it is. Emitters faster than the state's disk fill the
// gate only while one fdatasync runs, and wait for it (under the bus's
// lock: every emitter waits, in order) rather than lose events; a CRITICAL
// one still returns by critical_timeout.
func (s *sequencer) awaitGate(deadline time.Time) bool {
	if !s.gate.shut {
		return true
	}
	select {
	case <-s.gate.wait.done:
		return true
	default:
	}
	wait := time.Until(deadline)
	if wait <= 0 {
		return false
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-s.gate.wait.done:
		return true
	case <-t.C:
		return false
	}
}

// gateHolds is how many records the gate holds.
func (s *sequencer) gateHolds() int { return len(s.gate.records) }

// openGate waits until deadline for a shut gate's state to be durable, at
// shutdown, and returns what it releases. What it still holds then joins
// the records held back, which the shutdown counts as never delivered.
func (s *sequencer) openGate(deadline time.Time) []audit.Record {
	if !s.gate.shut {
		return nil
	}
	if s.awaitGate(deadline) {
		return s.pass(nil, false)
	}
	s.held = append(s.gate.records, s.held...)
	s.gate = epochGate{}
	return nil
}
