package audit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vramward/vramward/host/trail"
	"github.com/vramward/vramward/sdk/audit"
)

// sealed makes n records of a log, seqs 1 to n.
func sealed(t testing.TB, n int) []audit.Record {
	t.Helper()
	l, err := trail.New(trail.Origin("test"), trail.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Destroy()
	out := make([]audit.Record, n)
	for i := range out {
		e := info(t, i)
		out[i] = l.Seal(&e)
	}
	return out
}

func spooledSeqs(t *testing.T, s *spool) []uint64 {
	t.Helper()
	got, err := s.peek(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	seqs := make([]uint64, len(got))
	for i, r := range got {
		seqs[i] = r.Seq
	}
	return seqs
}

func wantSeqs(t *testing.T, got []uint64, want ...uint64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("spool holds seqs %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("spool holds seqs %v, want %v", got, want)
		}
	}
}

// TestShortSpoolWriteIsCutOff: a spool write cut short by a full disk leaves
// no partial record for the next one to be appended onto: every record
// written afterwards reads back. Before, the next event joined the partial
// line and the spool was unreadable for good.
func TestShortSpoolWriteIsCutOff(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool")
	s, err := openSpool(path, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	recs := sealed(t, 3)
	if err := s.append(recs[:1], false); err != nil {
		t.Fatal(err)
	}
	spoolWrite = func(f *os.File, b []byte) (int, error) {
		n, _ := f.Write(b[:len(b)/2])
		return n, syscall.ENOSPC
	}
	err = s.append(recs[1:2], false)
	spoolWrite = func(f *os.File, b []byte) (int, error) { return f.Write(b) }
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("a short write returned %v", err)
	}
	if err := s.append(recs[2:], false); err != nil {
		t.Fatal(err)
	}
	s.close()
	again, err := openSpool(path, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if again.lost != 0 {
		t.Errorf("%d records counted damaged: the partial write was not cut off", again.lost)
	}
	wantSeqs(t, spooledSeqs(t, again), 1, 3)
}

// TestTornSpoolTailIsCutAndCounted: a spool truncated inside its last
// record (a crash mid-append, a full disk) is cut back to its last whole
// record at the next start, the loss counted; what is appended next reads
// back. Before, the next event was appended onto the torn line.
func TestTornSpoolTailIsCutAndCounted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool")
	s, _ := openSpool(path, 1<<30)
	recs := sealed(t, 5)
	if err := s.append(recs[:4], false); err != nil {
		t.Fatal(err)
	}
	s.close()
	st, _ := os.Stat(path)
	if err := os.Truncate(path, st.Size()-7); err != nil {
		t.Fatal(err)
	}
	torn, err := openSpool(path, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if torn.lost != 1 || torn.pending != 3 {
		t.Fatalf("torn spool: lost %d, pending %d; want 1 and 3", torn.lost, torn.pending)
	}
	if err := torn.append(recs[4:], false); err != nil {
		t.Fatal(err)
	}
	torn.close()
	again, err := openSpool(path, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if again.lost != 0 {
		t.Fatalf("lost %d after the cut", again.lost)
	}
	wantSeqs(t, spooledSeqs(t, again), 1, 2, 3, 5)
}

// TestDamagedSpoolFrameIsSkippedAndCounted: a record whose bytes changed in
// the middle of a spool fails its checksum: it is counted and skipped, and
// the records around it are delivered.
func TestDamagedSpoolFrameIsSkippedAndCounted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool")
	s, _ := openSpool(path, 1<<30)
	if err := s.append(sealed(t, 5), false); err != nil {
		t.Fatal(err)
	}
	s.close()
	data, _ := os.ReadFile(path)
	second := strings.Index(string(data), "\n") + 1
	data[second+40] ^= 0x01
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	again, err := openSpool(path, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if again.lost != 1 || again.pending != 4 {
		t.Fatalf("lost %d, pending %d; want 1 and 4", again.lost, again.pending)
	}
	wantSeqs(t, spooledSeqs(t, again), 1, 3, 4, 5)
	if err := again.consume(4); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Error("the spool was not emptied once its whole records were delivered")
	}
}

// TestSpoolPositionItCannotHoldIsRefused: a read position past the spool's
// end (the spool truncated, the position edited) or inside a record is
// refused with the file and the fix; before, it silently skipped what lay
// between.
func TestSpoolPositionItCannotHoldIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool")
	s, _ := openSpool(path, 1<<30)
	if err := s.append(sealed(t, 3), false); err != nil {
		t.Fatal(err)
	}
	if err := s.consume(1); err != nil {
		t.Fatal(err)
	}
	s.close()
	pos, _ := os.ReadFile(path + ".pos")
	_, ino, _ := strings.Cut(string(pos), " ")
	st, _ := os.Stat(path)
	for _, c := range []struct{ pos, want string }{
		{"99999 " + ino, "past the end"},
		{"5 " + ino, "inside a record"},
		{"x " + ino, "not an offset"},
	} {
		if err := os.WriteFile(path+".pos", []byte(c.pos), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := openSpool(path, 1<<30)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path+".pos") {
			t.Errorf(".pos %q (spool %d bytes): %v; want %q naming the file", c.pos, st.Size(), err, c.want)
		}
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := openSpool(path, 1<<30); err == nil || !strings.Contains(err.Error(), "gone") {
		t.Errorf("a spool deleted under its position: %v", err)
	}
}

// TestUnreadableSpoolMakesTheSinkFailing: a sink whose spool cannot be read
// is "failing" (its plugin runs), not "up" with its queue growing; once the
// spool reads again everything is delivered.
func TestUnreadableSpoolMakesTheSinkFailing(t *testing.T) {
	dir := t.TempDir()
	s := &memSink{}
	b := newBus(t, dir, Options{QueueSize: 5}, s)
	s.set(errors.New("receiver gone"), nil)
	for i := 0; i < 20; i++ {
		if err := b.Emit(context.Background(), info(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the sink failing", func() bool { return b.sinks[0].failure() != nil })
	spool := filepath.Join(dir, "spool-s0.jsonl")
	eventually(t, "a spool", func() bool { _, err := os.Stat(spool); return err == nil })
	aside := spool + ".aside"
	if err := os.Rename(spool, aside); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(spool, 0o700); err != nil { // reads fail: EISDIR
		t.Fatal(err)
	}
	s.set(nil, nil)
	time.Sleep(1500 * time.Millisecond)
	st := b.Sinks()[0]
	if st.State != "failing" || !strings.Contains(st.LastError, "spool") || st.Since.IsZero() {
		t.Fatalf("sink with an unreadable spool: %+v", st)
	}
	if err := os.Remove(spool); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(aside, spool); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the sink up again", func() bool { return b.Sinks()[0].State == "up" && b.Depth()["s0"] == 0 })
	if err := b.Close("done"); err != nil {
		t.Fatal(err)
	}
	got := s.got()
	inSeqOrder(t, got)
	if !hasType(got, audit.AuditSinkFailed) || !hasType(got, audit.AuditSinkRecovered) {
		t.Error("the failure and the recovery are not in the trail")
	}
}

// FuzzSpool opens a spool of arbitrary bytes (a file a crash, a full disk
// or an editor left in state_dir): it never panics, and every record it
// then hands out is a whole canonical one whose frame checked.
func FuzzSpool(f *testing.F) {
	var good []byte
	for _, r := range sealed(f, 3) {
		good = appendFrame(good, r.Line)
	}
	f.Add(good)
	f.Add(good[:len(good)-5])
	f.Add(append(append([]byte(nil), good...), "00000000 {}\n"...))
	f.Add([]byte("{\"seq\":1}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "spool")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := openSpool(path, 1<<30)
		if err != nil {
			return
		}
		got, err := s.peek(1 << 20)
		if err != nil {
			return
		}
		if len(got) > s.pending {
			t.Fatalf("peek gave %d records, %d pending", len(got), s.pending)
		}
		for _, r := range got {
			if _, err := audit.ParseCanonical(r.Line); err != nil {
				t.Fatalf("handed out a record that is not canonical: %v", err)
			}
		}
	})
}
