// Package hashread reads a file once, front to back, computing its SHA-256,
// and lets a parser read the start of the same bytes: what is validated is
// exactly what is hashed, and a model of tens of GB is never held in memory.
// A goroutine reads ahead into a few large buffers while the caller hashes,
// so the disk (or page cache) and the hash work at the same time.
package hashread

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// ChunkBytes and Buffers size the read-ahead: 4 MiB reads keep syscalls
// rare, three buffers let one be read while one is hashed.
const (
	ChunkBytes = 4 << 20
	Buffers    = 3
)

type chunk struct {
	buf []byte // a pool buffer, to be returned
	n   int
	err error
}

// Stream is one pass over a file. Read serves the parser; Finish hashes
// what the parser did not read. Close must be called in every case.
type Stream struct {
	ctx    context.Context
	cancel context.CancelFunc
	chunks chan chunk
	free   chan []byte
	done   chan struct{}
	h      hash.Hash
	cur    chunk
	pos    int // read position in cur
	total  int64
	err    error
}

// Start begins reading f from offset 0 (by pread, so f's own offset does
// not matter).
func Start(ctx context.Context, f *os.File) *Stream {
	ctx, cancel := context.WithCancel(ctx)
	s := &Stream{
		ctx: ctx, cancel: cancel,
		chunks: make(chan chunk, Buffers), free: make(chan []byte, Buffers), done: make(chan struct{}),
		h: sha256.New(),
	}
	for i := 0; i < Buffers; i++ {
		s.free <- make([]byte, ChunkBytes)
	}
	// The kernel may read further ahead for a file read once in order.
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_SEQUENTIAL)
	go s.readAhead(f)
	return s
}

func (s *Stream) readAhead(f *os.File) {
	defer close(s.done)
	defer close(s.chunks)
	var off int64
	for {
		var buf []byte
		select {
		case buf = <-s.free:
		case <-s.ctx.Done():
			return
		}
		n, err := f.ReadAt(buf, off)
		off += int64(n)
		if errors.Is(err, io.EOF) && n > 0 {
			err = nil // the next read reports the end
		}
		select {
		case s.chunks <- chunk{buf: buf, n: n, err: err}:
		case <-s.ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// next moves to the next chunk, hashing it as it is taken so that every
// byte is hashed exactly once, in order, whoever reads it.
func (s *Stream) next() error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	if s.cur.buf != nil {
		s.free <- s.cur.buf
		s.cur = chunk{}
	}
	select {
	case c, ok := <-s.chunks:
		if !ok {
			return s.ctx.Err()
		}
		s.cur, s.pos = c, 0
		if c.n > 0 {
			s.h.Write(c.buf[:c.n])
			s.total += int64(c.n)
		}
		return c.err
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

// Read implements io.Reader over the file's bytes.
func (s *Stream) Read(p []byte) (int, error) {
	for s.pos >= s.cur.n {
		if s.err != nil {
			return 0, s.err
		}
		if err := s.next(); err != nil {
			s.err = err
			if s.pos < s.cur.n {
				break
			}
			return 0, err
		}
	}
	n := copy(p, s.cur.buf[s.pos:s.cur.n])
	s.pos += n
	return n, nil
}

// Finish reads and hashes the rest of the file and returns the digest of
// every byte and their count. The count must be the size the file had when
// opened: a file that grew or shrank while read is an error.
func (s *Stream) Finish(size int64) (digest [sha256.Size]byte, err error) {
	for s.err == nil {
		s.err = s.next()
	}
	if !errors.Is(s.err, io.EOF) {
		return digest, fmt.Errorf("read for SHA-256 at byte %d: %w", s.total, s.err)
	}
	if s.total != size {
		return digest, fmt.Errorf("the file changed size while it was read: %d bytes read, %d when opened", s.total, size)
	}
	copy(digest[:], s.h.Sum(nil))
	return digest, nil
}

// Close stops the read-ahead and waits for it.
func (s *Stream) Close() {
	s.cancel()
	<-s.done
}
