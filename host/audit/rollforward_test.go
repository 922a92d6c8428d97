package audit

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// trailLines is a trail of n sealed records, one line each.
func trailLines(t testing.TB, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, r := range sealed(t, n) {
		buf.Write(r.Line)
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}

// recordsAfter reads a trail file a sink wrote, which a hostile sink may
// have shaped: it returns only whole records after the seq asked for, in
// order, reads back from the end, and refuses what is not a regular file.
func TestRecordsAfterReadsOnlyTheTail(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "trail.log")
	// Enough records that the tail is found by stepping back, not by
	// reading from the start.
	data := trailLines(t, 3000)
	if err := os.WriteFile(path, append(data, `{"seq":3001,"cut`...), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, after := range []uint64{0, 1, 2990, 2999, 3000, 5000} {
		got, err := recordsAfter(path, after)
		if err != nil {
			t.Fatalf("after %d: %v", after, err)
		}
		want := int(max(3000-int64(after), 0))
		if len(got) != want {
			t.Fatalf("after %d: %d records, want %d (the cut last line is not one)", after, len(got), want)
		}
		for i, r := range got {
			if r.Event.Seq != after+uint64(i)+1 {
				t.Fatalf("after %d: record %d has seq %d", after, i, r.Event.Seq)
			}
		}
	}

	// A damaged record ends what is read; those before it stand.
	lines := bytes.SplitAfter(data, []byte("\n"))
	lines[2995] = []byte("not a record\n")
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := recordsAfter(path, 2990); err != nil || len(got) != 5 {
		t.Fatalf("past a damaged record: %d records, %v", len(got), err)
	}

	// A link to another file, a FIFO (whose open would block) and a
	// directory are not read.
	link := filepath.Join(dir, "link.log")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.log")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{link, fifo, dir, filepath.Join(dir, "absent.log")} {
		if got, err := recordsAfter(p, 0); err == nil {
			t.Fatalf("%s: read %d records", p, len(got))
		}
	}

	// A trail that would need more than rollForwardMaxBytes read back to
	// find the seq is skipped, not read whole.
	big := filepath.Join(dir, "big.log")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data[:bytes.IndexByte(data, '\n')+1]); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(rollForwardMaxBytes * 3); err != nil { // a hole reads as NUL bytes: no line at all
		t.Fatal(err)
	}
	f.Close()
	if _, err := recordsAfter(big, 0); err == nil {
		t.Fatal("read a trail further back than the bound")
	}
}

// FuzzRecordsAfter: no file content panics the tail reader, and what it
// returns is whole, checked records after the seq asked for, in order.
func FuzzRecordsAfter(f *testing.F) {
	data := trailLines(f, 5)
	f.Add(data, uint64(2))
	f.Add(data[:len(data)-3], uint64(0))
	f.Add([]byte("\n\n{}\n"), uint64(0))
	f.Fuzz(func(t *testing.T, data []byte, after uint64) {
		path := filepath.Join(t.TempDir(), "trail.log")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := recordsAfter(path, after)
		if err != nil {
			return
		}
		for i, r := range got {
			if r.Event.Seq <= after {
				t.Fatalf("record %d has seq %d, asked for those after %d", i, r.Event.Seq, after)
			}
			if len(r.Hash) != 32 {
				t.Fatalf("record %d: %s", i, fmt.Sprint(r.Hash))
			}
		}
	})
}
