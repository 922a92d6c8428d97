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
	// later is where, in records, the step holding the next epoch's end
	// begins when another epoch ended while the gate was shut (else 0),
	// and laterSeq the last such end: the answer for the first end does
	// not cover them, so they stay for one of their own.
	later    int
	laterSeq uint64
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
			if endsEpoch && len(records) > 0 {
				if g.later == 0 {
					g.later = len(g.records)
				}
				g.laterSeq = records[len(records)-1].Seq
			}
			g.records = append(g.records, records...)
			return nil
		}
		held, later, laterSeq := g.records, g.later, g.laterSeq
		*g = epochGate{}
		if err != nil && s.failing() != nil {
			// The save holding the new key failed: they wait with the
			// records a failing state holds back, ahead of them, until a
			// save succeeds (a sync one, which covers every new key).
			s.held = append(append(held, records...), s.held...)
			return nil
		}
		if later > 0 {
			// Another epoch ended meanwhile: from its step on, the records
			// wait for the state holding its key (and the newest one's,
			// if these records end an epoch too).
			rest := append(held[later:len(held):len(held)], records...)
			if endsEpoch && len(records) > 0 {
				laterSeq = records[len(records)-1].Seq
			}
			s.shutGate(rest, laterSeq)
			return held[:later]
		}
		records = append(held, records...)
	}
	if endsEpoch && len(records) > 0 {
		s.shutGate(records, records[len(records)-1].Seq)
		return nil
	}
	return records
}

// shutGate holds records until the state holding seq, an epoch's end, is
// durable.
func (s *sequencer) shutGate(records []audit.Record, seq uint64) {
	w := &gateWait{done: make(chan struct{})}
	s.gate = epochGate{shut: true, records: records, wait: w}
	durable := s.state.wait(seq)
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
	var out []audit.Record
	for s.gate.shut && s.awaitGate(deadline) {
		out = append(out, s.pass(nil, false)...)
	}
	if s.gate.shut {
		s.held = append(s.gate.records, s.held...)
		s.gate = epochGate{}
	}
	return out
}
