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

// spool is an append-only JSON-lines file of events with a read position
// kept beside it (path.pos: the offset and the spool file's inode, so a
// position left from a file that was since replaced is not applied to the
// new one), so a restart resumes where delivery stopped. It is never read
// whole: every pass streams it.
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
}

// ErrSpoolFull is an event that would take a spool past its cap.
var ErrSpoolFull = errors.New("spool full")

func openSpool(path string, limit int64) (*spool, error) {
	s := &spool{path: path, max: limit}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
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
	if data, err := os.ReadFile(path + ".pos"); err == nil {
		off, ino, _ := strings.Cut(strings.TrimSpace(string(data)), " ")
		if ino == "" || ino == strconv.FormatUint(inode(st), 10) {
			s.readOff, _ = strconv.ParseInt(off, 10, 64)
		}
	}
	s.readOff = min(max(s.readOff, 0), s.size)
	if _, err := f.Seek(s.readOff, io.SeekStart); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	br := bufio.NewReader(f)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			s.pending++
		}
		if err != nil {
			break
		}
	}
	return s, nil
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
	for i := range events {
		buf = append(append(buf, events[i].Line...), '\n')
	}
	if s.size+int64(len(buf)) > s.max {
		return fmt.Errorf("%w: %s holds %d bytes, spool_max_bytes is %d", ErrSpoolFull, s.path, s.size, s.max)
	}
	n, err := s.f.Write(buf)
	s.size += int64(n)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if sync {
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
	}
	s.pending += len(events)
	return nil
}

// parseSpooled reads a spooled line (its own allocation, newline included)
// back into the record it was: the line is sent as it is, so it must be
// the canonical record the host made.
func parseSpooled(line []byte) (audit.Record, error) {
	line = line[:len(line)-1]
	e, err := audit.ParseCanonical(line)
	if err != nil {
		return audit.Record{}, err
	}
	return audit.Record{Event: e, Line: line}, nil
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
		line, err := br.ReadBytes('\n')
		if err != nil {
			break
		}
		r, perr := parseSpooled(line)
		if perr != nil {
			return nil, fmt.Errorf("spool %s: %w", s.path, perr)
		}
		out = append(out, r)
		bytes += len(line)
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
		line, err := br.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			r, perr := parseSpooled(line)
			if perr != nil {
				return fmt.Errorf("spool %s: %w", s.path, perr)
			}
			if chunk = append(chunk, r); len(chunk) == cap(chunk) {
				fn(chunk)
				chunk = chunk[:0]
			}
		}
		if err != nil {
			break
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

// savePos writes the read position with the spool file's inode.
func (s *spool) savePos() error {
	st, err := os.Stat(s.path)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return os.WriteFile(s.path+".pos", []byte(fmt.Sprintf("%d %d", s.readOff, inode(st))), 0o600)
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
		line, err := br.ReadBytes('\n')
		if err != nil {
			return fmt.Errorf("spool: consume: %w", err)
		}
		s.readOff += int64(len(line))
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
	err := errors.Join(ignoreMissing(os.Remove(s.path)), ignoreMissing(os.Remove(s.path+".pos")))
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
	for i := range events {
		_, err := bw.Write(events[i].Line)
		if err == nil {
			err = bw.WriteByte('\n')
		}
		if err != nil {
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
