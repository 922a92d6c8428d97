package audit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/vramward/vramward/sdk/audit"
)

// spool is an append-only file of framed records with a read position
// kept beside it (path.pos: the offset and the spool file's inode, so a
// position left from a file that was since replaced is not applied to the
// new one), so a restart resumes where delivery stopped. It is never read
// whole: every pass streams it.
//
// Each record is framed: the CRC-32C of its line in 8 hex digits, a space,
// the line, a newline. A write cut short (a full disk) is cut off again, and
// a tail torn by a crash or a truncation is detected at the next start and
// cut off at the last whole record; a frame that fails its check between
// whole ones is skipped. Either way the loss is counted, and no record is
// ever appended onto a partial one. Lines of an earlier version, unframed
// records, are read as they are.
type spool struct {
	path    string
	max     int64 // cap of the file's size
	size    int64 // the file's size
	pending int   // events after the read position
	readOff int64 // byte offset of the read position
	f       *os.File
	// peeked/peekedBytes: the events the last peek returned and the bytes
	// they take, so consume need not read them again.
	peeked, peekedBytes int
	// lost counts the records found damaged when the spool was opened: a
	// torn tail cut off, frames failing their check.
	lost int
	// needsBreak is set when a partial frame could not be cut off: the
	// next append starts with a newline, so the partial frame stays one
	// damaged frame of its own instead of swallowing the next record.
	needsBreak bool
}

// ErrSpoolFull is an event that would take a spool past its cap.
var ErrSpoolFull = errors.New("spool full")

// spoolWrite writes to the spool file; tests cut writes short with it.
var spoolWrite = func(f *os.File, b []byte) (int, error) { return f.Write(b) }

func openSpool(path string, limit int64) (*spool, error) {
	s := &spool{path: path, max: limit}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		if _, perr := os.Stat(path + ".pos"); perr == nil {
			return nil, fmt.Errorf("spool %s is gone but its read position %s.pos is there: the spool was deleted; remove the .pos file to start without it (what it held is lost for that sink)", path, path)
		}
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s.size = st.Size()
	if err := s.readPosition(f, st); err != nil {
		return nil, err
	}
	if err := s.check(f); err != nil {
		return nil, err
	}
	return s, nil
}

// readPosition reads path.pos, refusing a position the spool cannot hold:
// past its end, or inside a record.
func (s *spool) readPosition(f *os.File, st os.FileInfo) error {
	data, err := os.ReadFile(s.path + ".pos")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("spool read position: %w", err)
	}
	text := strings.TrimSpace(string(data))
	if text == "" {
		return nil // written by an earlier version and cut by a crash: read from the start
	}
	offText, ino, _ := strings.Cut(text, " ")
	if n, err := strconv.ParseUint(ino, 10, 64); ino != "" && (err != nil || n != inode(st)) {
		return nil // left from a spool since replaced whole: read the new one from its start
	}
	fix := fmt.Sprintf("remove %s.pos to deliver the whole spool again (the sink is sent what it may already hold; the file sink skips those)", s.path)
	off, err := strconv.ParseInt(offText, 10, 64)
	if err != nil || off < 0 {
		return fmt.Errorf("spool read position %s.pos holds %q, not an offset: %s", s.path, data, fix)
	}
	if off > s.size {
		return fmt.Errorf("spool read position %s.pos is at byte %d, past the end of the spool (%d bytes): the spool was truncated, or the position edited; %s", s.path, off, s.size, fix)
	}
	if off > 0 {
		var b [1]byte
		if _, err := f.ReadAt(b[:], off-1); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		if b[0] != '\n' {
			return fmt.Errorf("spool read position %s.pos is at byte %d, inside a record: %s", s.path, off, fix)
		}
	}
	s.readOff = off
	return nil
}

// check counts the whole records after the read position and cuts off a
// damaged tail.
func (s *spool) check(f *os.File) error {
	if _, err := f.Seek(s.readOff, io.SeekStart); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	br := bufio.NewReader(f)
	off := s.readOff
	tail, tailFrames := int64(-1), 0 // where the damaged frames since the last whole one begin
	for {
		frame, err := br.ReadBytes('\n')
		if len(frame) > 0 {
			if _, ferr := frameLine(frame); ferr == nil {
				s.pending++
				s.lost += tailFrames // damaged frames between whole ones: skipped when read
				tail, tailFrames = -1, 0
			} else {
				if tail < 0 {
					tail = off
				}
				tailFrames++
			}
			off += int64(len(frame))
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("spool %s: %w", s.path, err)
		}
	}
	if tail < 0 {
		return nil
	}
	s.lost += tailFrames
	if err := os.Truncate(s.path, tail); err != nil {
		s.needsBreak = true
		return nil
	}
	s.size = tail
	return nil
}

func (s *spool) append(events []audit.Record, sync bool) error {
	if s.f == nil {
		f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		s.f = f
	}
	var buf []byte
	if s.needsBreak {
		buf = append(buf, '\n')
	}
	for i := range events {
		buf = appendFrame(buf, events[i].Line)
	}
	if s.size+int64(len(buf)) > s.max {
		return fmt.Errorf("%w: %s holds %d bytes, spool_max_bytes is %d", ErrSpoolFull, s.path, s.size, s.max)
	}
	n, err := spoolWrite(s.f, buf)
	if err == nil && n < len(buf) {
		err = io.ErrShortWrite
	}
	if err != nil {
		// Cut the partial frame off again; failing that, keep it apart
		// from the next one.
		if n > 0 {
			if terr := s.f.Truncate(s.size); terr != nil {
				s.size += int64(n)
				s.needsBreak = true
			}
		}
		return fmt.Errorf("spool: %w", err)
	}
	s.size += int64(n)
	s.needsBreak = false
	if sync {
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
	}
	s.pending += len(events)
	return nil
}

// peek reads up to max events from the read position.
func (s *spool) peek(max int) ([]audit.Record, error) {
	if s.pending == 0 {
		return nil, nil
	}
	f, br, err := s.fromReadPosition()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []audit.Record
	bytes := 0
	for len(out) < max {
		r, n, err := nextRecord(br)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("spool %s: %w", s.path, err)
		}
		out = append(out, r)
		bytes += n
	}
	s.peeked, s.peekedBytes = len(out), bytes
	return out, nil
}

// fromReadPosition opens the spool for reading at the read position.
func (s *spool) fromReadPosition() (*os.File, *bufio.Reader, error) {
	f, err := os.Open(s.path)
	if err != nil {
		return nil, nil, fmt.Errorf("spool: %w", err)
	}
	if _, err := f.Seek(s.readOff, io.SeekStart); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("spool: %w", err)
	}
	return f, bufio.NewReaderSize(f, 1<<20), nil
}

// scan hands fn the pending events in order, a chunk at a time, without
// moving the read position.
func (s *spool) scan(fn func([]audit.Record)) error {
	if s.pending == 0 {
		return nil
	}
	f, br, err := s.fromReadPosition()
	if err != nil {
		return err
	}
	defer f.Close()
	chunk := make([]audit.Record, 0, 1024)
	for {
		r, _, err := nextRecord(br)
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("spool %s: %w", s.path, err)
		}
		if chunk = append(chunk, r); len(chunk) == cap(chunk) {
			fn(chunk)
			chunk = chunk[:0]
		}
	}
	if len(chunk) > 0 {
		fn(chunk)
	}
	return nil
}

// consume moves the read position past n events.
func (s *spool) consume(n int) error {
	if n == s.peeked {
		s.readOff += int64(s.peekedBytes)
	} else if err := s.skip(n); err != nil {
		return err
	}
	s.peeked, s.peekedBytes = 0, 0
	s.pending -= n
	if s.pending == 0 {
		return s.reset()
	}
	return s.savePos()
}

// savePos writes the read position with the spool file's inode, in place
// and at a fixed width: one small write that a kill leaves whole or
// undone, never truncated to nothing.
func (s *spool) savePos() error {
	st, err := os.Stat(s.path)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	f, err := os.OpenFile(s.path+".pos", os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	_, err = f.WriteAt(fmt.Appendf(nil, "%020d %020d\n", s.readOff, inode(st)), 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

func inode(st os.FileInfo) uint64 {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return sys.Ino
	}
	return 0
}

// skip reads past n events from the read position.
func (s *spool) skip(n int) error {
	f, br, err := s.fromReadPosition()
	if err != nil {
		return err
	}
	defer f.Close()
	for i := 0; i < n; i++ {
		_, read, err := nextRecord(br)
		if err != nil {
			return fmt.Errorf("spool: consume: %w", err)
		}
		s.readOff += int64(read)
	}
	return nil
}

// reset empties a fully delivered spool.
func (s *spool) reset() error {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	s.readOff, s.peeked, s.peekedBytes, s.size = 0, 0, 0, 0
	// The position goes first: a kill between the two leaves a spool read
	// again from its start (the sink skips what it holds), never a
	// position without its spool.
	err := ignoreMissing(os.Remove(s.path + ".pos"))
	if err == nil {
		err = ignoreMissing(os.Remove(s.path))
	}
	if err != nil {
		return fmt.Errorf("spool: reset: %w", err)
	}
	return nil
}

// prepend rewrites the spool as events followed by what was still pending.
// The new spool is streamed into a temporary file, fsync'd and renamed over
// the old one, so a kill at any point leaves one whole spool on disk (the
// old one, with its position, or the new one, whose inode the old position
// does not match).
func (s *spool) prepend(events []audit.Record) error {
	s.peeked, s.peekedBytes = 0, 0 // what was peeked is no longer at the front
	if err := s.close(); err != nil {
		return err
	}
	tmp := s.path + ".new"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	defer os.Remove(tmp) // after a successful rename there is nothing to remove
	bw := bufio.NewWriterSize(f, 1<<20)
	var frame []byte
	for i := range events {
		frame = appendFrame(frame[:0], events[i].Line)
		if _, err := bw.Write(frame); err != nil {
			f.Close()
			return fmt.Errorf("spool: %w", err)
		}
	}
	if s.pending > 0 {
		old, err := os.Open(s.path)
		if err != nil {
			f.Close()
			return fmt.Errorf("spool: %w", err)
		}
		_, err = old.Seek(s.readOff, io.SeekStart)
		if err == nil {
			_, err = io.Copy(bw, old)
		}
		old.Close()
		if err != nil {
			f.Close()
			return fmt.Errorf("spool: copy what was pending: %w", err)
		}
	}
	err = bw.Flush()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = spoolRewriteHook()
	}
	if err == nil {
		err = os.Rename(tmp, s.path)
	}
	if err != nil {
		return fmt.Errorf("spool: rewrite: %w", err)
	}
	if err := syncDir(filepath.Dir(s.path)); err != nil {
		return err
	}
	st, err := os.Stat(s.path)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	// A partial frame at the old spool's end was copied with the rest
	// and still needs its break; without a copy there is none.
	s.needsBreak = s.needsBreak && s.pending > 0
	s.size, s.readOff, s.peeked, s.peekedBytes = st.Size(), 0, 0, 0
	s.pending += len(events)
	return ignoreMissing(os.Remove(s.path + ".pos"))
}

// spoolRewriteHook runs between the new spool's fsync and its rename; tests
// make it fail to stand for a kill at that point.
var spoolRewriteHook = func() error { return nil }

func (s *spool) close() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

func ignoreMissing(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
