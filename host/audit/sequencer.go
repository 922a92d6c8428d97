package audit

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vramward/vramward/host/trail"
	"github.com/vramward/vramward/sdk/audit"
)

// sequencer is the one owner of the node's log: the trail.Log (seqs, chain,
// tree, epoch keys, signed checkpoints), the state store that a restart
// continues from, and the writer that makes it durable. It turns events
// into sealed records and says, for each step, what may go to the sinks
// and how to wait for the state covering it. It knows nothing of sinks;
// the fan-out (bus.go) knows nothing of checkpoints. It is not safe for
// concurrent use: the bus calls it under its lock, which is what keeps
// the records it queues in seq order.
type sequencer struct {
	log       hclog.Logger
	m         *busMetrics
	serviceID string
	actor     audit.Actor
	// holdMax bounds the records held while the state cannot be written.
	holdMax int

	tlog  *trail.Log
	store *chainStore
	state *stateWriter
	// recovered is set when the last run did not stop cleanly; trails then
	// names the sinks' trail files on this node to roll forward over, and
	// spools the sinks' spools.
	recovered *auditRecovered
	trails    func() []string
	spools    []rollSource // the sinks' spools, set by the bus before start
	// firstSeq is the first seq this run seals (set at open); what a
	// sink's spool replays from before it is an earlier run's.
	firstSeq uint64

	// held are records sealed while the state could not be written (see
	// below), stateTried the last attempt to write it.
	held       []audit.Record
	stateTried time.Time
	// gate holds the records from an epoch's end on until the new key's
	// state is durable (epochgate.go); gateOpened, the bus's, hands out
	// what it releases.
	gate       epochGate
	gateOpened func()
	// healthMu guards the state's health, which the state writer reports
	// from its own goroutine.
	healthMu   sync.Mutex
	stateErr   error
	stateSince time.Time
}

// step is what one call of the sequencer leaves for the fan-out.
type step struct {
	// records go to every sink in this order: records a save released,
	// then what the call sealed (with the checkpoint after it, if any).
	records []audit.Record
	// sealed is the record the call sealed, nil for a checkpoint alone.
	sealed *audit.Record
	// durable answers once the state holding the step's checkpoint is
	// fdatasync'd; nil without a checkpoint.
	durable <-chan error
	// offers are the witnesses' offers of that checkpoint, to hand over:
	// the state holding it is written.
	offers []trail.Offer
	// signed says the step made a checkpoint, whose signatures used the
	// prepared nonces (Bus.prepareSigning).
	signed bool
	// critical, when set, fails the CRITICAL record sealed by the call
	// now: its state could not be written (the record is held) or it has
	// no checkpoint (the record still goes to the sinks).
	critical error
}

func openSequencer(opts Options, m *busMetrics) (*sequencer, error) {
	tlog, store, rec, err := openLog(opts.StateDir, opts.Origin, opts.Limits, opts.Logger.Info)
	if err != nil {
		return nil, err
	}
	s := &sequencer{log: opts.Logger, m: m, serviceID: opts.ServiceID, actor: opts.Actor, holdMax: opts.QueueSize,
		tlog: tlog, store: store, recovered: rec, trails: opts.SinkTrails, firstSeq: tlog.Seq() + 1}
	s.state = newStateWriter(store, opts.Logger.Error, s.stateFailed)
	tlog.Fill = s.fill
	return s, nil
}

// start records what the last run left unsaid (AuditRecovered, after a
// crash) and marks the state unclean until close saves it again.
func (s *sequencer) start() (step, error) {
	var st step
	if s.recovered != nil {
		// The crashed run's last records are beyond what it saved: say so
		// first, and continue the log from the saved tree.
		reason := "the last run stopped without a clean shutdown (crash, kill -9 or power loss)"
		var sources []rollSource
		if s.trails != nil {
			for _, path := range s.trails() {
				sources = append(sources, trailSource(path))
			}
		}
		reason += s.rollForward(append(sources, s.spools...))
		e, err := s.tlog.Recover(s.recovered.reserved, reason)
		if err != nil {
			return step{}, fmt.Errorf("record AuditRecovered: %w", err)
		}
		if st = s.next(&e, true); st.critical != nil {
			return step{}, fmt.Errorf("record AuditRecovered: %w", st.critical)
		}
	}
	if err := s.store.save(s.tlog, false, true); err != nil {
		return step{}, err
	}
	s.state.saved(s.tlog.Seq())
	return st, nil
}

// fill sets the envelope the host owns.
func (s *sequencer) fill(e *audit.Event) {
	if e.ServiceID == "" {
		e.ServiceID = s.serviceID
	}
	if e.Actor == (audit.Actor{}) {
		e.Actor = s.actor
	}
}

// emit seals e and takes the step after it: with a checkpoint when one is
// due, or when checkpoint is set (a CRITICAL record is covered by a signed
// checkpoint before its emit returns). While the state cannot be written
// and the records held back fill a queue, e is refused before it is
// sealed (it takes no seq): ErrStateUnwritten. When the epoch gate holds a
// queue's worth, emit waits for it to open until deadline (the zero time:
// not at all) before it refuses.
func (s *sequencer) emit(e *audit.Event, checkpoint bool, deadline time.Time) (step, error) {
	s.fill(e)
	var released []audit.Record
	if len(s.held) >= s.holdMax {
		var err error
		if released, err = s.retry(); err != nil {
			return step{}, fmt.Errorf("%w (%d records held back): %s %s not recorded: %v", ErrStateUnwritten, len(s.held), e.Severity, e.Type, err)
		}
	}
	released = s.pass(released, false)
	if s.gateHolds() >= s.holdMax && s.awaitGate(deadline) {
		released = append(released, s.pass(nil, false)...)
	}
	if n := s.gateHolds(); n >= s.holdMax {
		return step{}, fmt.Errorf("%w (%d records wait for the new epoch's state to be durable, which its disk has not answered in time): %s %s not recorded", ErrStateUnwritten, n, e.Severity, e.Type)
	}
	r := s.tlog.Seal(e)
	st := s.next(&r, checkpoint)
	st.records = append(released, st.records...)
	return st, nil
}

// next is the step after r (already sealed; nil for a checkpoint alone).
// The state is written before anything leaves, so that no signed
// checkpoint ever runs ahead of what a restart continues from.
func (s *sequencer) next(r *audit.Record, checkpoint bool) step {
	critical := r != nil && r.Severity == audit.Critical
	var st step
	// A failing state is tried again first (a CRITICAL emit always tries);
	// while it fails no checkpoint is made: it could not leave, and the
	// state would move on past checkpoints no copy holds.
	if s.failing() != nil && (critical || time.Since(s.stateTried) >= stateRetryEvery) {
		st.records, _ = s.retry() // a failure is counted and logged there
	}
	var batch []audit.Record
	if r != nil {
		batch = append(batch, *r)
		st.sealed = r
	}
	due, endEpoch := s.tlog.Due()
	var note []byte
	var ckErr error
	ended := false
	if (checkpoint || due) && s.failing() == nil {
		c, ck, err := s.tlog.Checkpoint(endEpoch)
		if err != nil {
			s.log.Error("could not make a checkpoint", "error", err)
			ckErr = err
		} else {
			batch, note, ended = append(batch, c), ck.Note, endEpoch
			st.signed = true
		}
	}
	// A witness is offered the checkpoint only once the state holding it
	// is saved; an offer not handed over is withdrawn.
	offers := s.tlog.TakeOffers()
	if len(batch) == 0 {
		s.withdraw(offers)
		st.records = s.pass(st.records, false)
		return st
	}
	for i := range batch {
		s.m.events.WithLabelValues(string(batch[i].Type), batch[i].Severity.String()).Inc()
	}
	durable, err := s.writeState(batch[len(batch)-1].Seq, note)
	if err != nil {
		// Held until the state is written: a sink given these now could
		// hold seqs a restart hands out again.
		s.held = append(s.held, batch...)
		s.withdraw(offers)
		if critical {
			st.critical = fmt.Errorf("CRITICAL audit event %s (seq %d): persist the log's state: %w", r.Type, r.Seq, err)
		}
		st.records = s.pass(st.records, false)
		return st
	}
	if len(s.held) > 0 {
		batch = append(s.held, batch...)
		s.held = nil
	}
	st.records = s.pass(append(st.records, batch...), ended)
	st.durable = durable
	if durable != nil {
		st.offers = offers
	} else {
		s.withdraw(offers)
	}
	if critical && ckErr != nil {
		st.critical = fmt.Errorf("CRITICAL audit event %s (seq %d): checkpoint: %w", r.Type, r.Seq, ckErr)
	}
	return st
}

// prepareSigning makes the next checkpoint's signing nonces now.
func (s *sequencer) prepareSigning() {
	if err := s.tlog.PrepareSigning(); err != nil {
		// The next checkpoint makes its nonces itself (and reports a
		// destroyed key there).
		s.log.Warn("could not prepare the next checkpoint's signatures", "error", err)
	}
}

// withdraw gives back offers that were not handed to their witness.
func (s *sequencer) withdraw(offers []trail.Offer) {
	for _, o := range offers {
		s.tlog.OfferFailed(o.Witness)
	}
}

// tick is the step time calls for: a checkpoint checkpoint_interval after
// the last one when records were added, and at an epoch's end even on an
// idle host (so a key does not outlive its epoch); else another try of a
// failing state. skew is a wall clock jump seen meanwhile.
func (s *sequencer) tick() (st step, skew time.Duration, jumped bool) {
	skew, jumped = s.tlog.ClockJump()
	if due, _ := s.tlog.Due(); due {
		return s.next(nil, true), skew, jumped
	}
	var released []audit.Record
	if time.Since(s.stateTried) >= stateRetryEvery {
		released, _ = s.retry() // a failure is counted and logged there
	}
	st.records = s.pass(released, false)
	return st, skew, jumped
}

// pending is how many records no checkpoint covers yet.
func (s *sequencer) pending() uint64 { return s.tlog.Pending() }

// resumeJump is how far the wall clock stood behind the last run's state.
func (s *sequencer) resumeJump() time.Duration { return s.tlog.ResumeJump() }

// close saves the state as clean and erases the epoch key.
func (s *sequencer) close() error {
	s.state.close()
	err := s.store.save(s.tlog, true, true)
	s.store.close()
	s.tlog.Destroy()
	return err
}

// trail reports where the log stands.
func (s *sequencer) trail() TrailState {
	seq, size, at := s.tlog.LastCheckpoint()
	return TrailState{Seq: s.tlog.Seq(), Epoch: s.tlog.Epoch(), LastCheckpointSeq: seq, LastCheckpointTreeSize: size, LastCheckpointAt: at}
}

// durable answers once the state holding seq is durable (an error when
// an fdatasync failed meanwhile). Safe to call without the bus's lock.
func (s *sequencer) durable(seq uint64) <-chan error { return s.state.wait(seq) }

// syncState makes the state written so far durable. Safe to call without
// the bus's lock (the store has its own).
func (s *sequencer) syncState() error { return s.store.sync() }

// setWitnesses names the witnesses every checkpoint is offered to.
func (s *sequencer) setWitnesses(names []string) { s.tlog.SetWitnesses(names) }

// The witnesses' answers, which move the log's view of each witness.
func (s *sequencer) offerFailed(witness string)           { s.tlog.OfferFailed(witness) }
func (s *sequencer) cosigned(witness string, size uint64) { s.tlog.Cosigned(witness, size) }
func (s *sequencer) refuse(witness string)                { s.tlog.Refuse(witness) }
func (s *sequencer) conflict(witness string, size uint64, fromOld bool) bool {
	return s.tlog.Conflict(witness, size, fromOld)
}

// The log's state is the seq authority: a restart resumes past the seqs the
// state on disk reserves, from the checkpoint it holds. So no record leaves
// the sequencer before the state that covers it is written: while a write
// fails, sealed records are held, in order, and released once a save
// succeeds. A kill -9 meanwhile loses only records no sink ever saw, whose
// seqs the next run may then reuse without forking any copy.

// stateRetryEvery spaces the attempts to write a failing state that
// ordinary events make; a CRITICAL emit always tries.
const stateRetryEvery = 100 * time.Millisecond

// ErrStateUnwritten is an emit refused before it was sealed: the log's state
// could not be written and the records held back already fill a queue.
var ErrStateUnwritten = errors.New("the log's state cannot be written")

// stateFailed records a failed write of the log's state.
func (s *sequencer) stateFailed(err error) {
	s.healthMu.Lock()
	first := s.stateErr == nil
	s.stateErr = err
	if first {
		s.stateSince = time.Now()
	}
	s.healthMu.Unlock()
	s.m.stateFailures.Inc()
	s.m.stateDegraded.Set(1)
	if first {
		s.log.Error("the log's state cannot be written: records are held back from every sink and CRITICAL emits fail until it is", "error", err)
	}
}

// stateWritten records a successful synchronous save.
func (s *sequencer) stateWritten() {
	s.healthMu.Lock()
	was, since := s.stateErr, s.stateSince
	s.stateErr = nil
	s.healthMu.Unlock()
	if was != nil {
		s.m.stateDegraded.Set(0)
		s.log.Info("the log's state is written again; held records go to the sinks", "failing_for", time.Since(since).Round(time.Millisecond).String())
	}
}

// health reports when the current failure to write the log's state began
// and its last error; a nil error while the state is written. Safe to
// call without the bus's lock.
func (s *sequencer) health() (since time.Time, err error) {
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	return s.stateSince, s.stateErr
}

func (s *sequencer) failing() error {
	_, err := s.health()
	return err
}

// writeState saves the log's state before the records up to last leave:
// fdatasync'd now when they pass the durable reservation; otherwise
// written now and fdatasync'd by the state writer, whose channel answers
// then (for a checkpoint).
// While the state fails, it fails at once (next tried it just before).
func (s *sequencer) writeState(last uint64, note []byte) (<-chan error, error) {
	if failing := s.failing(); failing != nil {
		return nil, failing
	}
	// Only a save for a reservation seqs are about to pass waits for the
	// disk here, under the bus's lock; every other save (a checkpoint, the
	// end of an epoch, a reservation ahead of need) is fdatasync'd by the
	// state writer. A kill -9 keeps what is written either way. A power
	// cut may lose a checkpoint's save while a sink keeps the checkpoint:
	// the next start rolls forward over that sink's trail (rollforward.go).
	sync := s.store.needsReservation(last)
	ahead := s.store.wantsReservation(last)
	if !sync && note == nil && !ahead {
		return nil, nil
	}
	s.stateTried = time.Now()
	if err := s.store.save(s.tlog, false, sync); err != nil {
		s.stateFailed(err)
		return nil, err
	}
	if sync {
		s.state.saved(last)
		s.stateWritten()
	}
	if sync && note == nil {
		return nil, nil
	}
	durable := s.state.persist(last, note)
	if note == nil {
		return nil, nil // a reservation ahead of need: nobody waits for it
	}
	return durable, nil
}

// retry writes a failing state again and, once it is written, releases
// what was held.
func (s *sequencer) retry() ([]audit.Record, error) {
	err := s.failing()
	if err == nil && len(s.held) == 0 {
		return nil, nil
	}
	s.stateTried = time.Now()
	if err := s.store.save(s.tlog, false, true); err != nil {
		s.stateFailed(err)
		return nil, err
	}
	s.state.saved(s.tlog.Seq())
	s.stateWritten()
	held := s.held
	s.held = nil
	return held, nil
}

// dropHeld gives up, at shutdown, the records that never left because the
// state could not be written: every sink misses them.
func (s *sequencer) dropHeld() ([]audit.Record, error) {
	if len(s.held) == 0 {
		return nil, nil
	}
	held := s.held
	s.held = nil
	return held, fmt.Errorf("%d records (seq %d to %d) never left the host: %w: %v", len(held), held[0].Seq, held[len(held)-1].Seq, ErrStateUnwritten, s.failing())
}
