package audit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/vramward/vramward/sdk/audit"
)

// spool is an append-only JSON-lines file of events with a read position
// kept beside it (path.pos), so a restart resumes where delivery stopped.
type spool struct {
	path    string
	pending int   // events after the read position
	readOff int64 // byte offset of the read position
	f       *os.File
	// peeked/peekedBytes: the events the last peek returned and the bytes
	// they take, so consume need not read them again.
	peeked, peekedBytes int
}

func openSpool(path string) (*spool, error) {
	s := &spool{path: path}
	data, err := os.ReadFile(path + ".pos")
	if err == nil {
		s.readOff, _ = strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	defer f.Close()
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

func (s *spool) append(events []audit.Event, sync bool) error {
	if s.f == nil {
		f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		s.f = f
	}
	var buf []byte
	for i := range events {
		buf = append(events[i].AppendJSON(buf), '\n')
	}
	if _, err := s.f.Write(buf); err != nil {
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

// peek reads up to max events from the read position.
func (s *spool) peek(max int) ([]audit.Event, error) {
	if s.pending == 0 {
		return nil, nil
	}
	f, err := os.Open(s.path)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(s.readOff, io.SeekStart); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(f, 1<<20)
	var out []audit.Event
	bytes := 0
	for len(out) < max {
		line, err := br.ReadBytes('\n')
		if err != nil {
			break
		}
		e, perr := audit.ParseJSON(line[:len(line)-1])
		if perr != nil {
			return nil, fmt.Errorf("spool %s: %w", s.path, perr)
		}
		out = append(out, e)
		bytes += len(line)
	}
	s.peeked, s.peekedBytes = len(out), bytes
	return out, nil
}

// scan hands fn the pending events in order, a chunk at a time, without
// moving the read position.
func (s *spool) scan(fn func([]audit.Event)) error {
	if s.pending == 0 {
		return nil
	}
	f, err := os.Open(s.path)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(s.readOff, io.SeekStart); err != nil {
		return err
	}
	br := bufio.NewReaderSize(f, 1<<20)
	chunk := make([]audit.Event, 0, 1024)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			e, perr := audit.ParseJSON(line[:len(line)-1])
			if perr != nil {
				return fmt.Errorf("spool %s: %w", s.path, perr)
			}
			if chunk = append(chunk, e); len(chunk) == cap(chunk) {
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
	return os.WriteFile(s.path+".pos", []byte(strconv.FormatInt(s.readOff, 10)), 0o600)
}

// skip reads past n events from the read position.
func (s *spool) skip(n int) error {
	f, err := os.Open(s.path)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(s.readOff, io.SeekStart); err != nil {
		return err
	}
	br := bufio.NewReaderSize(f, 1<<20)
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
	s.readOff, s.peeked, s.peekedBytes = 0, 0, 0
	err := errors.Join(ignoreMissing(os.Remove(s.path)), ignoreMissing(os.Remove(s.path+".pos")))
	if err != nil {
		return fmt.Errorf("spool: reset: %w", err)
	}
	return nil
}

// prepend rewrites the spool as events followed by what was still pending.
func (s *spool) prepend(events []audit.Event) error {
	rest, err := s.peek(s.pending)
	if err != nil {
		return err
	}
	if err := s.reset(); err != nil {
		return err
	}
	s.pending = 0
	all := append(append([]audit.Event(nil), events...), rest...)
	if err := s.append(all, true); err != nil {
		return err
	}
	return s.close()
}

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
