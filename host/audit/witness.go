package audit

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vramward/vramward/host/trail"
	"github.com/vramward/vramward/host/witness"
	"github.com/vramward/vramward/sdk/audit"
)

// Witness is a witness the bus submits every checkpoint to.
type Witness struct {
	Name   string
	Client *witness.Client
}

// witnessTimeout bounds one submission; a witness that does not answer in
// time is offered the next checkpoint instead.
const witnessTimeout = 10 * time.Second

// Results of a submission, the metric's result label.
const (
	witnessCosigned = "cosigned"
	witnessConflict = "conflict"
	witnessRefused  = "refused"
	witnessError    = "error"
)

type witnessMetrics struct {
	submissions *prometheus.CounterVec
	size        *prometheus.GaugeVec
}

func newWitnessMetrics(reg prometheus.Registerer, names []string) (*witnessMetrics, error) {
	m := &witnessMetrics{
		submissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vramward_witness_submissions_total",
			Help: "Checkpoints submitted to a witness, by result: cosigned, conflict (the witness held another size; resolved), refused (inconsistent with what it cosigned: recorded as CRITICAL) or error (no answer).",
		}, []string{"witness", "result"}),
		size: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vramward_witness_cosigned_tree_size",
			Help: "The tree size of the last checkpoint a witness cosigned.",
		}, []string{"witness"}),
	}
	for _, c := range []prometheus.Collector{m.submissions, m.size} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, n := range names {
		for _, r := range []string{witnessCosigned, witnessConflict, witnessRefused, witnessError} {
			m.submissions.WithLabelValues(n, r)
		}
		m.size.WithLabelValues(n)
	}
	return m, nil
}

// witnesses runs one submitter per witness. Submissions are off every
// emit's path: a checkpoint is handed over after the state that holds it
// is saved, and submitted once that state is durable.
type witnesses struct {
	b      *Bus
	m      *witnessMetrics
	queues map[string]chan trail.Offer
	stop   chan struct{}
	wg     sync.WaitGroup
}

func startWitnesses(b *Bus, list []Witness) (*witnesses, error) {
	names := make([]string, len(list))
	for i, w := range list {
		names[i] = w.Name
	}
	m, err := newWitnessMetrics(b.opts.Registerer, names)
	if err != nil {
		return nil, err
	}
	ws := &witnesses{b: b, m: m, queues: map[string]chan trail.Offer{}, stop: make(chan struct{})}
	for _, w := range list {
		q := make(chan trail.Offer, 1)
		ws.queues[w.Name] = q
		ws.wg.Add(1)
		go ws.run(w, q)
	}
	return ws, nil
}

// dispatch hands the log's new offers to their submitters; b.mu is held.
func (ws *witnesses) dispatch(offers []trail.Offer) {
	for _, o := range offers {
		select {
		case ws.queues[o.Witness] <- o:
		default:
			ws.b.seq.offerFailed(o.Witness) // cannot happen: one offer at a time
		}
	}
}

func (ws *witnesses) close() {
	close(ws.stop)
	ws.wg.Wait()
}

func (ws *witnesses) run(w Witness, q chan trail.Offer) {
	defer ws.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-ws.stop; cancel() }()
	defer cancel()
	for {
		select {
		case <-ws.stop:
			return
		case o := <-q:
			ws.submit(ctx, w, o)
		}
	}
}

func (ws *witnesses) submit(ctx context.Context, w Witness, o trail.Offer) {
	b := ws.b
	fail := func(result string, err error) {
		b.mu.Lock()
		b.seq.offerFailed(w.Name)
		b.mu.Unlock()
		ws.m.submissions.WithLabelValues(w.Name, result).Inc()
		if ctx.Err() == nil {
			b.log.Warn("a witness did not cosign a checkpoint; the next one is offered", "witness", w.Name, "tree_size", o.Size, "error", err)
		}
	}
	// No witness sees a checkpoint a restart could lose.
	if err := b.seq.syncState(); err != nil {
		fail(witnessError, err)
		return
	}
	proof, err := o.Proof()
	if err != nil {
		fail(witnessError, err)
		return
	}
	sctx, cancel := context.WithTimeout(ctx, witnessTimeout)
	sigs, err := w.Client.AddCheckpoint(sctx, witness.Request{OldSize: o.OldSize, Proof: proof, Checkpoint: o.Checkpoint})
	cancel()
	var conflict *witness.ConflictError
	var status *witness.StatusError
	switch {
	case err == nil:
		b.mu.Lock()
		b.seq.cosigned(w.Name, o.Size)
		b.mu.Unlock()
		ws.m.submissions.WithLabelValues(w.Name, witnessCosigned).Inc()
		ws.m.size.WithLabelValues(w.Name).Set(float64(o.Size))
		ws.record(audit.AuditCheckpointCosignedFields{Witness: w.Name, TreeSize: o.Size, Cosignature: base64.StdEncoding.EncodeToString(sigs)})
	case errors.As(err, &conflict):
		b.mu.Lock()
		ok := b.seq.conflict(w.Name, conflict.Size, conflict.Size == o.OldSize)
		b.mu.Unlock()
		if ok {
			ws.m.submissions.WithLabelValues(w.Name, witnessConflict).Inc()
			b.log.Info("a witness holds another tree size than this host knew; the next checkpoint is offered from it", "witness", w.Name, "witness_size", conflict.Size)
			return
		}
		ws.refused(w, o, http.StatusConflict, conflict.Size, err)
	case errors.As(err, &status) && status.Inconsistent():
		b.mu.Lock()
		b.seq.refuse(w.Name)
		b.mu.Unlock()
		ws.refused(w, o, status.Code, o.OldSize, err)
	default:
		fail(witnessError, err)
	}
}

// refused records a witness's refusal of a checkpoint as inconsistent with
// what it cosigned: this log forked or was rolled back. It is CRITICAL, and
// the witness is offered nothing more until the host restarts.
func (ws *witnesses) refused(w Witness, o trail.Offer, code int, witnessSize uint64, err error) {
	ws.m.submissions.WithLabelValues(w.Name, witnessRefused).Inc()
	ws.b.log.Error("a witness refused a checkpoint as inconsistent with the last it cosigned: this log was forked or rolled back", "witness", w.Name,
		"tree_size", o.Size, "witness_size", witnessSize, "error", err)
	ws.record(audit.AuditCheckpointRefusedFields{Witness: w.Name, TreeSize: o.Size, Status: uint64(code), WitnessSize: witnessSize, Reason: err.Error()})
}

// record emits an event about a witness; a CRITICAL one waits as any does
// (its failure is counted by the bus).
func (ws *witnesses) record(f audit.Fields) {
	t := f.EventType()
	e, err := audit.Make(audit.Actor{}, f)
	if err != nil {
		ws.b.log.Error("could not make an audit event", "type", t, "error", err)
		return
	}
	wait, err := ws.b.Submit(e)
	if err != nil {
		return // shut down
	}
	ctx, cancel := context.WithTimeout(context.Background(), ws.b.opts.CriticalTimeout)
	defer cancel()
	if err := wait(ctx); err != nil {
		ws.b.log.Error("audit event not durable", "type", t, "error", err)
	}
}
