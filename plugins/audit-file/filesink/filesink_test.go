package filesink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audit/chain"
	"github.com/vramward/vramward/sdk/audittest"
	"github.com/vramward/vramward/sdk/schema"
)

// ReadBack reads every file of the trail named in config, oldest first.
func ReadBack(t *testing.T, config []byte) []audit.Event {
	t.Helper()
	var cfg struct{ Path string }
	if err := json.Unmarshal(config, &cfg); err != nil {
		t.Fatal(err)
	}
	return readTrail(t, cfg.Path)
}

func readTrail(t *testing.T, path string) []audit.Event {
	t.Helper()
	files, err := TrailFiles(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return audittest.ReadJSONLines(t, files...)
}

func TestConformance(t *testing.T) {
	audittest.Run(t, func(t *testing.T) (audit.Sink, []byte) {
		return New(nil), []byte(fmt.Sprintf(`{"path": %q}`, filepath.Join(t.TempDir(), "trail", "audit.log")))
	}, audittest.WithReadBack(ReadBack))
}

func configure(t *testing.T, s *Sink, cfg string) error {
	t.Helper()
	vals, err := Schema.Decode([]byte(cfg))
	if err != nil {
		t.Fatalf("decode %s: %v", cfg, err)
	}
	return s.Configure(context.Background(), vals)
}

func open(t *testing.T, path string, extra string) *Sink {
	t.Helper()
	s := New(nil)
	if err := configure(t, s, fmt.Sprintf(`{"path": %q %s}`, path, extra)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func TestModesAndRefusals(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new")
	path := filepath.Join(dir, "audit.log")
	s := open(t, path, "")
	if err := s.Write(context.Background(), audittest.Records(audittest.Events(1))); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, path: 0o600} {
		st, err := os.Stat(p)
		if err != nil || st.Mode() != want {
			t.Errorf("%s: mode %v, want %v (%v)", p, st.Mode(), want, err)
		}
	}

	base := t.TempDir()
	target := filepath.Join(base, "real.log")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link.log")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	asDir := filepath.Join(base, "adir")
	if err := os.Mkdir(asDir, 0o700); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(base, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, cfg, field, want string
	}{
		{"symlink", fmt.Sprintf(`{"path": %q}`, link), "path", "symbolic link"},
		{"directory", fmt.Sprintf(`{"path": %q}`, asDir), "path", "is not a regular file"},
		{"fifo", fmt.Sprintf(`{"path": %q}`, fifo), "path", "is not a regular file"},
		{"world-writable dir", fmt.Sprintf(`{"path": %q}`, filepath.Join(open, "a.log")), "path", "writable by group or others"},
		{"relative", `{"path": "audit.log"}`, "path", "clean absolute"},
		{"unclean", `{"path": "/var/log/../log/a.log"}`, "path", "clean absolute"},
		{"negative max_bytes", fmt.Sprintf(`{"path": %q, "max_bytes": -1}`, path), "max_bytes", "must be 0"},
		{"zero max_files", fmt.Sprintf(`{"path": %q, "max_files": 0}`, path), "max_files", "between 1"},
		{"zero flush_interval", fmt.Sprintf(`{"path": %q, "flush_interval": "0s"}`, path), "flush_interval", "positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := configure(t, New(nil), tc.cfg)
			fe := schema.FieldErrors(err)
			if len(fe) == 0 || fe[0].Field != tc.field || !strings.Contains(fe[0].Msg, tc.want) {
				t.Fatalf("got %v, want a %s error mentioning %q", err, tc.field, tc.want)
			}
		})
	}

	loose := filepath.Join(t.TempDir(), "loose.log")
	if err := os.WriteFile(loose, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o644); err != nil {
		t.Fatal(err)
	}
	open2 := New(nil)
	if err := configure(t, open2, fmt.Sprintf(`{"path": %q}`, loose)); err != nil {
		t.Fatal(err)
	}
	defer open2.Close(context.Background())
	if st, _ := os.Stat(loose); st.Mode().Perm() != 0o600 {
		t.Errorf("existing 0644 file left at %v", st.Mode().Perm())
	}
}

func TestRotationKeepsTheChainVerifiable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	s := open(t, path, `, "max_bytes": 4096, "max_files": 3`)
	events := audittest.Events(120)
	for i := 0; i < len(events); i += 5 {
		if err := s.Write(context.Background(), audittest.Records(events[i:i+5])); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	files, err := TrailFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 4 || files[0] != path+".3" || files[3] != path {
		t.Fatalf("files %v, want path.3 path.2 path.1 path", files)
	}
	rep, err := chain.VerifyLinkFiles(files...)
	if err != nil {
		t.Fatalf("verify across rotated files: %v", err)
	}
	if rep.FirstSeq == 1 || rep.LastSeq != 120 {
		t.Errorf("report %+v: want the oldest files dropped and the last seq 120", rep)
	}
}

func TestRestartSkipsReSentEvents(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	events := audittest.Events(30)
	s := open(t, path, "")
	if err := s.Write(context.Background(), audittest.Records(events[:20])); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The host re-sends what it had in flight (15..19) with what follows.
	s2 := open(t, path, "")
	if err := s2.Write(context.Background(), audittest.Records(events[15:])); err != nil {
		t.Fatal(err)
	}
	_ = s2.Close(context.Background())
	got := readTrail(t, path)
	if len(got) != 30 {
		t.Fatalf("trail holds %d events, want 30 (each once)", len(got))
	}
	for i, e := range got {
		if e.Seq != uint64(i+1) {
			t.Fatalf("record %d has seq %d", i, e.Seq)
		}
	}
	// The same seq with another MAC is not a re-send: it is written, and the
	// verifier will show the conflict, rather than silently dropped.
	other := audittest.Events(31)[30:]
	other[0].Seq = 30
	s3 := open(t, path, "")
	if err := s3.Write(context.Background(), audittest.Records(other)); err != nil {
		t.Fatal(err)
	}
	_ = s3.Close(context.Background())
	if n := len(readTrail(t, path)); n != 31 {
		t.Fatalf("conflicting record dropped: %d records", n)
	}
}

func TestPartialLineFromACrashIsCut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	events := audittest.Events(3)
	s := open(t, path, "")
	if err := s.Write(context.Background(), audittest.Records(events[:2])); err != nil {
		t.Fatal(err)
	}
	_ = s.Close(context.Background())
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	line := events[2].AppendJSON(nil)
	if _, err := f.Write(line[:len(line)/2]); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s2 := open(t, path, "")
	if err := s2.Write(context.Background(), audittest.Records(events[2:])); err != nil {
		t.Fatal(err)
	}
	_ = s2.Close(context.Background())
	if got := readTrail(t, path); len(got) != 3 {
		t.Fatalf("%d records after the cut, want 3", len(got))
	}
}

// faultyFile fails writes after writing part of the data, like a disk that
// fills up mid-write, and can fail truncates and fsyncs.
type faultyFile struct {
	file
	failWrite    error
	failTruncate error
	failSync     error
}

func (f *faultyFile) Write(p []byte) (int, error) {
	if f.failWrite != nil {
		n, _ := f.file.Write(p[:len(p)/2])
		return n, f.failWrite
	}
	return f.file.Write(p)
}

func (f *faultyFile) Truncate(n int64) error {
	if f.failTruncate != nil {
		return f.failTruncate
	}
	return f.file.Truncate(n)
}

func (f *faultyFile) Sync() error {
	if f.failSync != nil {
		return f.failSync
	}
	return f.file.Sync()
}

func withFaultyFile(t *testing.T) *faultyFile {
	ff := &faultyFile{}
	real := openFile
	openFile = func(path string) (file, error) {
		f, err := real(path)
		ff.file = f
		return ff, err
	}
	t.Cleanup(func() { openFile = real })
	return ff
}

func TestFailedWriteLeavesNoPartialLine(t *testing.T) {
	ff := withFaultyFile(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	s := open(t, path, "")
	events := audittest.Events(40)
	if err := s.Write(context.Background(), audittest.Records(events[:10])); err != nil {
		t.Fatal(err)
	}
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EIO} {
		ff.failWrite = errno
		err := s.Write(context.Background(), audittest.Records(events[10:20]))
		if !errors.Is(err, errno) {
			t.Fatalf("want %v, got %v", errno, err)
		}
		if n := len(readTrail(t, path)); n != 10 {
			t.Fatalf("after %v: %d records, want the 10 before it", errno, n)
		}
	}
	// The cut itself fails: the next write cuts first.
	ff.failWrite, ff.failTruncate = syscall.ENOSPC, syscall.EIO
	if err := s.Write(context.Background(), audittest.Records(events[10:20])); err == nil {
		t.Fatal("write succeeded")
	}
	ff.failWrite, ff.failTruncate = nil, nil
	if err := s.Write(context.Background(), audittest.Records(events[10:20])); err != nil {
		t.Fatal(err)
	}
	if got := readTrail(t, path); len(got) != 20 || got[19].Seq != 20 {
		t.Fatalf("after recovery: %d records", len(got))
	}
	ff.failSync = syscall.EIO
	if err := s.Write(context.Background(), audittest.Records(events[20:21])); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(context.Background()); !errors.Is(err, syscall.EIO) {
		t.Fatalf("fsync failure not reported: %v", err)
	}
	ff.failSync = nil
}

func TestReopenAfterExternalRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	s := open(t, path, "")
	events := audittest.Events(20)
	if err := s.Write(context.Background(), audittest.Records(events[:10])); err != nil {
		t.Fatal(err)
	}
	// logrotate moves the file; without a signal the next Flush notices,
	// reopens the path and has the next write say so (the host records it)
	// before the host's re-send is taken.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var re *ReplacedError
	if err := s.Write(context.Background(), audittest.Records(events[10:15])); !errors.As(err, &re) {
		t.Fatalf("the first write after an unsignalled rotation returned %v", err)
	}
	if err := s.Write(context.Background(), audittest.Records(events[10:15])); err != nil {
		t.Fatal(err)
	}
	// With a signal (SIGHUP at the host -> Reopen RPC).
	if err := os.Rename(path+".1", path+".2"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Reopen(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(context.Background(), audittest.Records(events[15:])); err != nil {
		t.Fatal(err)
	}
	_ = s.Close(context.Background())
	got := readTrail(t, path)
	if len(got) != 20 {
		t.Fatalf("%d records across the rotated files, want 20", len(got))
	}
	for i, e := range got {
		if e.Seq != uint64(i+1) {
			t.Fatalf("record %d has seq %d", i, e.Seq)
		}
	}
}

func TestTrailFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.log")
	for _, n := range []string{"a.log", "a.log.1", "a.log.10", "a.log.2", "a.log.01", "a.log.x", "b.log.1"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := TrailFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{path + ".10", path + ".2", path + ".1", path}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// TestDeletedOrReplacedTrailLosesNothing: someone deletes the live trail, or
// moves it away and puts another file at its path, while the sink has it
// open. The next batch is refused with the reason (so the host records
// AuditSinkFailed and AuditSinkRecovered), but not lost: the deleted file's
// content is saved beside it, the batch is written again to the file now at
// the path, and the host's re-send of it is skipped as a duplicate. Every
// acknowledged event is in some file afterwards.
func TestDeletedOrReplacedTrailLosesNothing(t *testing.T) {
	ctx := context.Background()
	for _, how := range []string{"deleted", "moved away", "replaced"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "audit.log")
			events := audittest.Events(30)
			s := open(t, path, "")
			defer s.Close(ctx)
			if err := s.Write(ctx, audittest.Records(events[:10])); err != nil {
				t.Fatal(err)
			}
			switch how {
			case "deleted":
				must(t, os.Remove(path))
			case "moved away":
				must(t, os.Rename(path, path+".old"))
			case "replaced":
				must(t, os.Rename(path, path+".old"))
				must(t, os.WriteFile(path, nil, 0o600))
			}
			err := s.Write(ctx, audittest.Records(events[10:20]))
			var re *ReplacedError
			if !errors.As(err, &re) {
				t.Fatalf("a batch written into a %s trail was acknowledged: %v", how, err)
			}
			// The host re-sends the refused batch, then goes on.
			if err := s.Write(ctx, audittest.Records(events[10:20])); err != nil {
				t.Fatalf("re-send: %v", err)
			}
			if err := s.Write(ctx, audittest.Records(events[20:])); err != nil {
				t.Fatal(err)
			}
			must(t, s.Flush(ctx))
			live := audittest.ReadJSONLines(t, path)
			if len(live) != 20 || live[0].Seq != 11 || live[19].Seq != 30 {
				t.Fatalf("the file at the path holds %d records from seq %d", len(live), live[0].Seq)
			}
			var before string
			if how == "deleted" {
				if re.SavedTo == "" {
					t.Fatal("the deleted file's content was not saved")
				}
				before = re.SavedTo
			} else {
				before = path + ".old"
			}
			old := audittest.ReadJSONLines(t, before)
			if old[0].Seq != 1 || len(old) < 10 {
				t.Fatalf("%s holds %d records from seq %d; want seqs 1 to 10 at least", before, len(old), old[0].Seq)
			}
			if !strings.Contains(err.Error(), how) && !(how == "deleted" && strings.Contains(err.Error(), "deleted")) {
				t.Errorf("the error does not say what happened: %v", err)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
