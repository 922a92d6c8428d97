package audit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vramward/vramward/sdk/audit"
)

// queue holds one sink's undelivered events in order: in memory up to its
// capacity, then in a spool file in the state dir, so a slow or dead sink
// neither blocks the others nor loses anything. Once events overflow to the
// spool, every later event goes there too until it is drained, which keeps
// the order.
type queue struct {
	mu       sync.Mutex
	wake     chan struct{} // signalled on push and close
	mem      []audit.Event
	cap      int
	spool    *spool
	spooling bool
	closed   bool
	// urgent is set by a CRITICAL event: its emitter is waiting, so the next
	// delivery does not wait for the batch to fill.
	urgent  bool
	onDepth func(int)
}

func newQueue(capacity int, sp *spool, onDepth func(int)) *queue {
	q := &queue{wake: make(chan struct{}, 1), cap: capacity, spool: sp, onDepth: onDepth}
	q.spooling = sp.pending > 0 // events left by the last run come first
	q.report()
	return q
}

func (q *queue) depth() int { return len(q.mem) + q.spool.pending }

func (q *queue) report() {
	if q.onDepth != nil {
		q.onDepth(q.depth())
	}
}

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// push appends e; it only fails when the spool cannot be written.
func (q *queue) push(e audit.Event) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.spooling || len(q.mem) >= q.cap {
		if err := q.spool.append([]audit.Event{e}, e.Severity == audit.Critical); err != nil {
			return err
		}
		q.spooling = true
	} else {
		q.mem = append(q.mem, e)
	}
	if e.Severity == audit.Critical {
		q.urgent = true
	}
	q.report()
	q.signal()
	return nil
}

// next returns up to max events from the front without removing them,
// waiting up to wait for a batch to fill. It returns nil once the queue is
// closed and empty, or when stop is closed.
func (q *queue) next(max int, wait time.Duration, stop <-chan struct{}) ([]audit.Event, error) {
	var deadline <-chan time.Time
	for {
		q.mu.Lock()
		n := q.depth()
		closed, urgent := q.closed, q.urgent
		q.urgent = false
		q.mu.Unlock()
		switch {
		case n >= max || (n > 0 && (closed || urgent || wait <= 0)):
			return q.peek(max)
		case n == 0 && closed:
			return nil, nil
		case n > 0 && deadline == nil:
			t := time.NewTimer(wait)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case <-q.wake:
		case <-deadline:
			return q.peek(max)
		case <-stop:
			return nil, nil
		}
	}
}

func (q *queue) peek(max int) ([]audit.Event, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.mem) > 0 {
		n := min(max, len(q.mem))
		return append([]audit.Event(nil), q.mem[:n]...), nil
	}
	return q.spool.peek(max)
}

// commit removes the n events next returned, after their delivery.
func (q *queue) commit(n int) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	defer q.report()
	if len(q.mem) > 0 {
		q.mem = append(q.mem[:0], q.mem[n:]...)
		return nil
	}
	if err := q.spool.consume(n); err != nil {
		return err
	}
	if q.spool.pending == 0 {
		q.spooling = false
	}
	return nil
}

// close makes next return nil once the queue is empty.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

// spill moves what is left in memory to the front of the spool, for the
// next start to deliver first.
func (q *queue) spill() (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := q.depth()
	if len(q.mem) > 0 {
		if err := q.spool.prepend(q.mem); err != nil {
			return n, err
		}
		q.mem = nil
		q.spooling = true
	}
	q.report()
	return n, nil
}

// spool is an append-only JSON-lines file of events with a read position
// kept beside it (path.pos), so a restart resumes where delivery stopped.
type spool struct {
	path    string
	pending int   // events after the read position
	readOff int64 // byte offset of the read position
	f       *os.File
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
	}
	return out, nil
}

// consume moves the read position past n events.
func (s *spool) consume(n int) error {
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
	s.pending -= n
	if s.pending == 0 {
		return s.reset()
	}
	return os.WriteFile(s.path+".pos", []byte(strconv.FormatInt(s.readOff, 10)), 0o600)
}

// reset empties a fully delivered spool.
func (s *spool) reset() error {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	s.readOff = 0
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
