package audit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audit/chain"
)

// After a crash the log resumes from the newest state on disk. A power cut
// can leave that state older than a checkpoint a sink already made
// durable: the state's fdatasync runs alongside the sinks' fsyncs (so that
// a CRITICAL emit waits for both at once), and the cut may fall between
// them. Continuing from the older state would fork the log at the sink's
// checkpoint. So a start after a crash first reads the trails the sinks
// write on this node and continues over the records past the state, up to
// the last checkpoint among them that the log's key signed (trail.Log
// RollForward checks every link and the signature: a sink's file is not
// trusted). It could not cross a checkpoint that ends an epoch, whose next
// key only the state holds; the epoch gate (epochgate.go) keeps such a
// checkpoint on the host until that state is durable. The sinks' spools
// are read too: a spool replayed to a sink off the node must not carry a
// checkpoint the log did not continue from.

// rollForwardMaxBytes bounds how far back from a trail's end a start reads
// for the records past its state. The state falls behind by at most the
// records of a few fdatasyncs; a trail that needs more is skipped.
const rollForwardMaxBytes = 64 << 20

// rollSource is one copy a roll forward reads: a sink's trail file, or
// the records a sink's spool holds for it.
type rollSource struct {
	name  string
	after func(seq uint64) ([]chain.Record, error) // the records past seq
}

// trailSource reads a sink's trail file.
func trailSource(path string) rollSource {
	return rollSource{name: path, after: func(seq uint64) ([]chain.Record, error) { return recordsAfter(path, seq) }}
}

// spoolSource reads what a sink's spool holds for it: records the crashed
// run sealed that no sink took yet. A checkpoint among them that the log
// did not continue from would fork the copy the spool is replayed to.
func spoolSource(sp *spool) rollSource {
	return rollSource{name: sp.path, after: func(seq uint64) ([]chain.Record, error) {
		var out []chain.Record
		err := sp.scan(func(rs []audit.Record) {
			for i := range rs {
				if rs[i].Seq <= seq {
					continue
				}
				if r, cerr := chain.Check(rs[i].Line); cerr == nil {
					out = append(out, r)
				}
			}
		})
		return out, err
	}}
}

// rollForward continues the log over each source in turn and says what it
// took, for the AuditRecovered reason; "" when none was ahead.
func (s *sequencer) rollForward(sources []rollSource) string {
	took := ""
	for _, src := range sources {
		from := s.tlog.Seq()
		records, err := src.after(from)
		if err != nil {
			s.log.Warn("could not read a copy of the trail to continue the log past its saved state; a checkpoint it holds past the state would fork the log", "path", src.name, "error", err)
			continue
		}
		n, seq, err := s.tlog.RollForward(records)
		if err != nil {
			s.log.Error("could not continue the log over a copy of the trail", "path", src.name, "error", err)
			continue
		}
		if n == 0 {
			continue
		}
		s.log.Warn("the log's state on disk was behind a sink's trail (a power cut before the state's fdatasync): the log continues from the checkpoint the trail holds",
			"path", src.name, "state_seq", from, "checkpoint_seq", seq, "records", n)
		took = fmt.Sprintf("; the saved state was behind a copy of the trail, so the log continues from its checkpoint at seq %d (%d records past the state)", seq, n)
	}
	return took
}

// recordsAfter reads the records after seq from a trail file: from the
// end back to the record after seq, then forward. A damaged or cut line
// ends what is read; the records before it stand.
func recordsAfter(path string, seq uint64) ([]chain.Record, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	start, err := lineBefore(f, fi.Size(), seq+1)
	if err != nil {
		return nil, err
	}
	var out []chain.Record
	err = chain.ReadRecords(chain.Source{Name: path, R: io.NewSectionReader(f, start, fi.Size()-start)}, func(r chain.Record) error {
		if r.Event.Seq > seq {
			out = append(out, r)
		}
		return nil
	})
	var damaged *chain.Error
	if err != nil && !errors.As(err, &damaged) {
		return nil, err
	}
	return out, nil
}

// lineBefore finds, reading back from the end of f in doubling steps, the
// start of a line whose record's seq is at most seq (or the file's start).
func lineBefore(f *os.File, size int64, seq uint64) (int64, error) {
	for back := int64(64 << 10); ; back *= 2 {
		off := size - back
		if off <= 0 {
			return 0, nil
		}
		if back > rollForwardMaxBytes {
			return 0, fmt.Errorf("no record at or before seq %d in its last %d bytes", seq, rollForwardMaxBytes)
		}
		br := bufio.NewReaderSize(io.NewSectionReader(f, off, size-off), 64<<10)
		// The rest of a line that began before off, then the first whole
		// one; a line too long for the buffer, a cut last line or one
		// that is not a record: step further back.
		skipped, err := br.ReadSlice('\n')
		if err != nil {
			continue
		}
		at := off + int64(len(skipped))
		line, err := br.ReadSlice('\n')
		if err != nil {
			continue
		}
		if e, err := audit.ParseJSON(chain.RecordOf(line[:len(line)-1])); err == nil && e.Seq <= seq {
			return at, nil
		}
	}
}
