package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vramward/vramward/host/trail"
	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audit/chain"
)

// TestPowerCutAfterASinkKeptTheCheckpoint: a power cut after a sink's
// fsync of a checkpoint and before the state's fdatasync, emulated: the
// state slots are put back to what they held when an earlier CRITICAL
// emit returned (durable then), after the sink has fsync'd a later
// checkpoint and a record past it. Rolled forward over the sink's trail,
// the next start continues from that checkpoint and the trail verifies,
// with the crash's loss declared. Without the roll forward (as before),
// the recovery skips a checkpoint the sink holds and verify calls it
// forged.
func TestPowerCutAfterASinkKeptTheCheckpoint(t *testing.T) {
	for _, mode := range []string{"rolled forward", "rolled forward over a rotated file", "without the roll forward"} {
		roll, rotated := mode != "without the roll forward", mode == "rolled forward over a rotated file"
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(t.TempDir(), "trail.log")
			c := openCopy(t, path)
			b, _, _ := newBusWithSink(t, dir, Options{}, c)
			emit := func(n int) {
				for i := 0; i < n; i++ {
					if err := b.Emit(context.Background(), info(t, i)); err != nil {
						t.Fatal(err)
					}
				}
			}
			emit(3)
			if err := b.Emit(context.Background(), critical(t)); err != nil {
				t.Fatal(err)
			}
			kept := readSlots(t, dir)
			emit(2)
			if err := b.Emit(context.Background(), critical(t)); err != nil {
				t.Fatal(err)
			}
			emit(1)
			last := b.Trail().Seq
			eventually(t, "the last record on the sink", func() bool {
				c.mu.Lock()
				defer c.mu.Unlock()
				_, ok := c.have[last]
				return ok
			})
			// The cut: the bus stops unclosed, and the state's writes since
			// the first CRITICAL emit never reached the disk.
			crash(b)
			for name, data := range kept {
				if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
					t.Fatal(err)
				}
			}

			files := []string{path}
			if rotated {
				// The sink moved its file aside before the cut: what is
				// past the state is in the rotated file.
				if err := os.Rename(path, path+".1"); err != nil {
					t.Fatal(err)
				}
				files = []string{path + ".1", path}
			}
			var opts Options
			if roll {
				opts.SinkTrails = func() []string { return append([]string{filepath.Join(t.TempDir(), "absent.log")}, files...) }
			}
			b2, _, _ := newBusWithSink(t, dir, opts, openCopy(t, path))
			if !b2.Recovered {
				t.Fatal("not recovered")
			}
			if err := b2.Emit(context.Background(), info(t, 9)); err != nil {
				t.Fatal(err)
			}
			if err := b2.Close("after the cut"); err != nil {
				t.Fatal(err)
			}

			key, _, err := trail.ReadVerifierKey(filepath.Join(dir, PublicKeyFile))
			if err != nil {
				t.Fatal(err)
			}
			verify := func(accept ...trail.SeqRange) (trail.Report, error) {
				return trail.VerifyFiles(trail.Options{Key: key, AcceptLoss: accept}, files...)
			}
			rep, err := verify()
			var ve *chain.Error
			if !roll {
				if !errors.As(err, &ve) || ve.Problem != chain.Forged {
					t.Fatalf("a recovery past a checkpoint the sink holds was not called forged: %v", err)
				}
				return
			}
			if !errors.As(err, &ve) || ve.Problem != trail.Lost || len(rep.Lost) != 1 {
				t.Fatalf("want the crash's declared loss alone: %v", err)
			}
			// What is lost starts after the sink's last checkpoint: the one
			// record past it, and the seqs the crashed run reserved.
			if from := rep.Lost[0].From; from != last {
				t.Fatalf("loss declared from seq %d, want from %d (after the checkpoint the sink kept)", from, last)
			}
			if _, err := verify(rep.Lost[0].SeqRange); err != nil {
				t.Fatalf("verify: %v", err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(data), "continues from its checkpoint at seq") {
				t.Fatal("AuditRecovered does not say the log rolled forward")
			}
		})
	}
}

// readSlots is the state slot files' bytes.
func readSlots(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, name := range []string{"chain.state.a", "chain.state.b"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		out[name] = data
	}
	return out
}

// checkpointWatch is a sink that counts, as each batch arrives, the
// checkpoints that ahead counts and those of them that came before their
// state was durable: durable is what the test's fdatasync hook saw reach
// the disk (slowDurableSlots).
type checkpointWatch struct {
	memSink
	off     bool
	durable *atomic.Uint64
	ahead   func(r *audit.Record, durable uint64) (counts, early bool)
	early   atomic.Int32
	all     atomic.Int32
}

func (w *checkpointWatch) offNode() bool { return w.off }

func (w *checkpointWatch) Write(ctx context.Context, records []audit.Record) error {
	for i := range records {
		if records[i].Type != audit.AuditCheckpoint {
			continue
		}
		if counts, early := w.ahead(&records[i], w.durable.Load()); counts {
			w.all.Add(1)
			if early {
				w.early.Add(1)
			}
		}
	}
	return w.memSink.Write(ctx, records)
}

// TestEpochEndLeavesOnlyOnceTheNewKeyIsDurable: with every fdatasync of
// the state taking 20 ms, no checkpoint that ends an epoch reaches a sink
// before the state holding the next key is durable (a power cut before
// then would leave a sink past what a start can roll forward over), and
// a CRITICAL emit right after an epoch's end still returns. Before the
// epoch gate, each such checkpoint left at once.
func TestEpochEndLeavesOnlyOnceTheNewKeyIsDurable(t *testing.T) {
	dir := t.TempDir()
	// An epoch's end is early while no durable slot holds the next epoch.
	sink := &checkpointWatch{durable: slowDurableSlots(t, "epoch"), ahead: func(r *audit.Record, durable uint64) (bool, bool) {
		var f audit.AuditCheckpointFields
		ends := audit.Decode(&r.Event, &f) == nil && f.NextKey != ""
		return ends, durable <= r.Chain.Epoch
	}}
	b, _, _ := newBusWithSink(t, dir, Options{Limits: trail.Limits{EpochEvents: 5, EpochDuration: time.Hour, CheckpointEvents: 100, CheckpointInterval: time.Hour}}, sink)
	var all int
	for i := 0; i < 30; i++ {
		e := info(t, i)
		if i%7 == 6 {
			e = critical(t)
		}
		if err := b.Emit(context.Background(), e); err != nil {
			t.Fatalf("emit %d: %v", i, err)
		}
		all++
	}
	if err := b.Close("done"); err != nil {
		t.Fatal(err)
	}
	if sink.all.Load() < 5 {
		t.Fatalf("%d epoch ends reached the sink", sink.all.Load())
	}
	if n := sink.early.Load(); n > 0 {
		t.Fatalf("%d of %d checkpoints ending an epoch reached the sink before the next key's state was durable", n, sink.all.Load())
	}
	verifyRecords(t, dir, sink.got())
}

// TestOffNodeCopyGetsACheckpointOnlyOnceItsStateIsDurable: a sink whose
// copy is off the node (syslog) gets no checkpoint before the state
// holding it is durable, with every fdatasync taking 20 ms: a power cut
// can then leave no copy with a checkpoint that neither the state on disk
// nor a trail on the node holds. A sink on the node gets them at once
// (the next start rolls forward over its file): there most arrive first,
// which is what the off-node sink would see without the wait. CRITICAL
// emits, which wait for both sinks, still succeed.
func TestOffNodeCopyGetsACheckpointOnlyOnceItsStateIsDurable(t *testing.T) {
	dir := t.TempDir()
	durable := slowDurableSlots(t, "seq")
	before := func(r *audit.Record, durable uint64) (bool, bool) { return true, durable < r.Seq }
	local := &checkpointWatch{durable: durable, ahead: before}
	remote := &checkpointWatch{off: true, durable: durable, ahead: before}
	b, _, _ := newBusWithSink(t, dir, Options{Limits: trail.Limits{EpochEvents: 1000, EpochDuration: time.Hour, CheckpointEvents: 3, CheckpointInterval: time.Hour}}, local, remote)
	for i := 0; i < 20; i++ {
		e := info(t, i)
		if i%5 == 4 {
			e = critical(t)
		}
		if err := b.Emit(context.Background(), e); err != nil {
			t.Fatalf("emit %d: %v", i, err)
		}
	}
	if err := b.Close("done"); err != nil {
		t.Fatal(err)
	}
	if remote.all.Load() < 5 || remote.all.Load() != local.all.Load() {
		t.Fatalf("checkpoints: %d on the node, %d off it", local.all.Load(), remote.all.Load())
	}
	if n := remote.early.Load(); n > 0 {
		t.Fatalf("%d of %d checkpoints reached the off-node sink before their state was durable", n, remote.all.Load())
	}
	if local.early.Load() == 0 {
		t.Fatal("no checkpoint reached the on-node sink ahead of its state: the test does not tell the two apart")
	}
	verifyRecords(t, dir, remote.got())
	verifyRecords(t, dir, local.got())
}

// offNodeSink is a memSink whose copy is off the node.
type offNodeSink struct{ memSink }

func (*offNodeSink) offNode() bool { return true }

// TestPowerCutWithTheCheckpointInASpool: the one sink is off the node and
// down, so its records, checkpoints among them, wait in its spool (written
// and fsync'd on the node). A power cut then leaves the state behind the
// spool. The next start rolls forward over the spool, so what it replays
// to the sink is part of the log that continues: that copy verifies, with
// the crash's loss accepted. Without the spool among the sources it would
// be forged.
func TestPowerCutWithTheCheckpointInASpool(t *testing.T) {
	dir := t.TempDir()
	down := &offNodeSink{}
	down.set(errors.New("receiver down"), nil)
	limits := trail.Limits{EpochEvents: 1000, EpochDuration: time.Hour, CheckpointEvents: 3, CheckpointInterval: time.Hour}
	b, _, _ := newBusWithSink(t, dir, Options{QueueSize: 2, Limits: limits}, down)
	emit := func(n int) {
		for i := 0; i < n; i++ {
			if err := b.Emit(context.Background(), info(t, i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	emit(3)
	// The checkpoint over them is durable once a sync save covers it.
	if err := b.seq.syncState(); err != nil {
		t.Fatal(err)
	}
	kept := readSlots(t, dir)
	emit(4)
	if err := b.seq.syncState(); err != nil { // the state the cut loses
		t.Fatal(err)
	}
	spool, err := os.ReadFile(filepath.Join(dir, "spool-s0.jsonl"))
	if err != nil || !strings.Contains(string(spool), `"type":"AuditCheckpoint"`) {
		t.Fatalf("no checkpoint in the spool (%v)", err)
	}
	crash(b)
	for name, data := range kept {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	up := &offNodeSink{}
	b2, _, _ := newBusWithSink(t, dir, Options{Limits: limits}, up)
	if err := b2.Emit(context.Background(), info(t, 99)); err != nil {
		t.Fatal(err)
	}
	if err := b2.Close("after the cut"); err != nil {
		t.Fatal(err)
	}
	key, data := trailOf(t, dir, [][]audit.Event{up.got()})
	rep, err := trail.Verify(trail.Options{Key: key}, chain.Source{Name: "copy", R: bytes.NewReader(data)})
	var ve *chain.Error
	if !errors.As(err, &ve) || ve.Problem != trail.Lost || len(rep.Lost) != 1 {
		t.Fatalf("want the crash's declared loss alone: %v", err)
	}
	if _, err := trail.Verify(trail.Options{Key: key, AcceptLoss: []trail.SeqRange{rep.Lost[0].SeqRange}}, chain.Source{Name: "copy", R: bytes.NewReader(data)}); err != nil {
		t.Fatalf("the copy the spool was replayed to: %v", err)
	}
}

// slowDurableSlots makes every fdatasync of the state take 20 ms and
// returns the highest value of the slot body's field (its first "field":N)
// among the slots an fdatasync has returned for: what the disk holds.
func slowDurableSlots(t *testing.T, field string) *atomic.Uint64 {
	t.Helper()
	var durable atomic.Uint64
	valueOf := regexp.MustCompile(`"` + field + `":(\d+)`)
	slow := func(fd int) error {
		time.Sleep(20 * time.Millisecond)
		data, err := os.ReadFile(fmt.Sprintf("/proc/self/fd/%d", fd))
		if err != nil {
			return err
		}
		if err := unix.Fdatasync(fd); err != nil {
			return err
		}
		if m := valueOf.FindSubmatch(data); m != nil {
			n, _ := strconv.ParseUint(string(m[1]), 10, 64)
			for old := durable.Load(); n > old && !durable.CompareAndSwap(old, n); old = durable.Load() {
			}
		}
		return nil
	}
	fdatasyncHook.Store(&slow)
	t.Cleanup(func() { fdatasyncHook.Store(nil) })
	return &durable
}
