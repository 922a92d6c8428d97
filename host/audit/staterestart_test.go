package audit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vramward/vramward/host/trail"
	"github.com/vramward/vramward/sdk/audit"
)

// The log's state across restarts: what a start continues from, and
// what it refuses.

func TestChainStateAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	s := &memSink{}
	b := newBus(t, dir, Options{}, s)
	for i := 0; i < 5; i++ {
		if err := b.Emit(context.Background(), info(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close("first"); err != nil {
		t.Fatal(err)
	}
	// A clean stop: the next run continues the log.
	s2 := &memSink{}
	b2 := newBus(t, dir, Options{}, s2)
	if b2.Recovered {
		t.Fatal("a clean stop was taken for a crash")
	}
	if err := b2.Emit(context.Background(), info(t, 9)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "delivery", func() bool { return len(s2.got()) == 1 })
	first, next := s.got(), s2.got()[0]
	if next.Seq != first[len(first)-1].Seq+1 || string(next.Chain.Prev) != string(first[len(first)-1].Chain.Hash) {
		t.Fatalf("the log does not continue: seq %d after %d", next.Seq, first[len(first)-1].Seq)
	}
	// No Close: an unclean stop. The next run records AuditRecovered past
	// the reservation, linked to the last record the state holds.
	crash(b2)
	s3 := &memSink{}
	b3 := newBus(t, dir, Options{}, s3)
	if !b3.Recovered {
		t.Fatal("an unclean stop was not recovered")
	}
	if err := b3.Emit(context.Background(), info(t, 10)); err != nil {
		t.Fatal(err)
	}
	if err := b3.Close("third"); err != nil {
		t.Fatal(err)
	}
	rec := s3.got()[0]
	if rec.Type != audit.AuditRecovered || rec.Seq <= next.Seq || string(rec.Chain.Prev) != string(first[len(first)-1].Chain.Hash) {
		t.Fatalf("recovery record: %s seq %d prev %x", rec.Type, rec.Seq, rec.Chain.Prev)
	}
	// The three runs are one log that verifies with the public key; the
	// crashed run's record after its saved state is named.
	rep := verifyRecordsAfterCrash(t, dir, s.got(), s2.got(), s3.got())
	if len(rep.Notes) == 0 || !strings.Contains(rep.Notes[0], "not part of the log") {
		t.Fatalf("notes %q", rep.Notes)
	}
}

func TestLostStateWithAPublicKeyIsRefused(t *testing.T) {
	dir := t.TempDir()
	b := newBus(t, dir, Options{}, &memSink{})
	if err := b.Close("x"); err != nil {
		t.Fatal(err)
	}
	if err := removeState(dir); err != nil {
		t.Fatal(err)
	}
	_, err := New(Options{StateDir: dir, Origin: trail.Origin("test")}, nil)
	if err == nil || !strings.Contains(err.Error(), PublicKeyFile) {
		t.Fatalf("a new log replaced the public key of the old one: %v", err)
	}
}

func removeState(dir string) error {
	return errors.Join(os.Remove(filepath.Join(dir, "chain.state.a")), os.Remove(filepath.Join(dir, "chain.state.b")))
}

// TestTornStateSlotFallsBack: a save cut short by a power loss leaves a slot
// that fails its checksum; the other slot still holds a state.
func TestTornStateSlotFallsBack(t *testing.T) {
	dir := t.TempDir()
	b := newBus(t, dir, Options{}, &memSink{})
	for i := 0; i < 3; i++ {
		if err := b.Emit(context.Background(), critical(t)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close("x"); err != nil {
		t.Fatal(err)
	}
	cs := &chainStore{dir: dir}
	newest, key, _, err := cs.load()
	if err != nil {
		t.Fatal(err)
	}
	key.Destroy()
	// The slot holding the newest gen (slots alternate only once the last
	// save is durable, so gen does not name it).
	slot := ""
	var data []byte
	for i := 0; i < 2; i++ {
		d, _ := os.ReadFile(cs.slotPath(i))
		if body, _, _ := decodeSlot(d); body.Gen == newest.Gen {
			slot, data = cs.slotPath(i), d
		}
	}
	if slot == "" {
		t.Fatalf("no slot holds gen %d", newest.Gen)
	}
	data[20] ^= 0xff // a torn write
	if err := os.WriteFile(slot, data, 0o600); err != nil {
		t.Fatal(err)
	}
	got, _, found, err := (&chainStore{dir: dir}).load()
	if err != nil || !found || got.Gen != newest.Gen-1 {
		t.Fatalf("after tearing gen %d: found %v gen %d err %v", newest.Gen, found, got.Gen, err)
	}
	// The older slot was not written by a clean stop: the next start
	// records AuditRecovered rather than reusing anything.
	b2 := newBus(t, dir, Options{}, &memSink{})
	defer b2.Close("y")
	if !b2.Recovered {
		t.Fatal("resumed from an older, unclean slot without AuditRecovered")
	}
}

// TestChangedPublicKeyFileIsRefused: an audit.pub edited to another first
// key, to another identity key, or deleted, next to the log's state, stops
// the start naming the file; so do an identity key or a checkpoint left
// without the state. Before, each went unnoticed.
func TestChangedPublicKeyFileIsRefused(t *testing.T) {
	dir := t.TempDir()
	b := newBus(t, dir, Options{}, &memSink{})
	if err := b.Close("x"); err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(dir, PublicKeyFile)
	orig, err := os.ReadFile(pub)
	if err != nil {
		t.Fatal(err)
	}
	other, err := trail.New(trail.Origin("test"), trail.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Destroy()
	lines := strings.Split(strings.TrimSpace(string(orig)), "\n")
	for _, c := range []struct {
		name, text, want string
	}{
		{"first key replaced", other.VerifierKey() + "\n" + lines[1] + "\n", "names the first key"},
		{"identity replaced", lines[0] + "\n" + trail.IdentityPrefix + other.VerifierKey() + "\n", "names the identity key"},
		{"deleted", "", "is gone"},
	} {
		if c.text == "" {
			err = os.Remove(pub)
		} else {
			err = os.WriteFile(pub, []byte(c.text), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
		_, err := New(Options{StateDir: dir, Origin: trail.Origin("test")}, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), pub) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	// Slots and audit.pub gone, the checkpoint left: refused too.
	if err := errors.Join(removeState(dir)); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{StateDir: dir, Origin: trail.Origin("test")}, nil); err == nil || !strings.Contains(err.Error(), CheckpointFile) {
		t.Errorf("a state dir with only its checkpoint left started a new log: %v", err)
	}
	if !HasLog(dir) {
		t.Error("HasLog false with the checkpoint there")
	}
}

// TestAClosedStoreWritesNoCheckpointFile: the state writer refreshes
// state_dir/checkpoint once it is idle, which can fall after the store
// closed (a host stopping on a fault, or the crash of a test). Nothing
// is written then: the directory may already be someone else's.
func TestAClosedStoreWritesNoCheckpointFile(t *testing.T) {
	dir := t.TempDir()
	cs := &chainStore{dir: dir}
	if err := cs.writeCheckpoint([]byte("open\n")); err != nil {
		t.Fatal(err)
	}
	cs.close()
	if err := cs.writeCheckpoint([]byte("closed\n")); !errors.Is(err, errStoreClosed) {
		t.Fatalf("a closed store wrote its checkpoint file: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, CheckpointFile)); err != nil || string(got) != "open\n" {
		t.Fatalf("the checkpoint file is %q (%v)", got, err)
	}
	if _, err := os.Stat(filepath.Join(dir, CheckpointFile+".new")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a closed store left %s.new (%v)", CheckpointFile, err)
	}
}
