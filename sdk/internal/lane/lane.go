// Package lane frames the record lane: a socket pair of its own between the
// host and one audit sink plugin, beside go-plugin's gRPC connection, for
// the sink's one-message emits (every CRITICAL one among them).
//
// Why a second path: a CRITICAL emit waits for one message out, the sink's
// write and fsync, and one answer back. Over gRPC each message passes
// through the transport's reader and writer goroutines on both ends; on a
// small VM those hand-offs, after the sink's thread slept in fsync, cost
// about as much as the fsync itself (bench/RESULTS.md). On the lane the
// goroutine that writes a frame is the one that waits for its answer.
//
// The lane carries the messages the gRPC stream does, protobuf-encoded,
// and a failure as the gRPC status the stream would have ended with (code,
// message and details), so errors cross it typed exactly as they cross
// gRPC. Everything else (Info, Configure, Flush, Shutdown, multi-message
// batches) stays on gRPC.
//
// A frame is a 13-byte header, then the payload:
//
//	length  uint32, big-endian: the payload's bytes
//	id      uint64, big-endian: the request's; its answer repeats it
//	kind    one byte: Request, Response or Status
package lane

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
)

// EnvFD names the descriptor of the plugin's end of the lane in the
// plugin's environment; a plugin started without it has no lane.
const EnvFD = "VRAMWARD_RECORD_LANE_FD"

// Frame kinds.
const (
	Request  byte = 1 // an EmitBatchRequest, host to plugin
	Response byte = 2 // an EmitBatchResponse, plugin to host
	Status   byte = 3 // a google.rpc.Status, plugin to host: the request failed
)

// HeaderBytes is a frame's fixed part.
const HeaderBytes = 13

// Frame is one message on the lane. A Frame from Read aliases the reader's
// buffer until the next Read.
type Frame struct {
	ID      uint64
	Kind    byte
	Payload []byte
}

// Append appends the frame's encoding to dst: one buffer, written with
// one call, so a frame never interleaves with another writer's.
func Append(dst []byte, id uint64, kind byte, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	dst = binary.BigEndian.AppendUint64(dst, id)
	dst = append(dst, kind)
	return append(dst, payload...)
}

// Reader reads frames of at most max payload bytes.
type Reader struct {
	r   *bufio.Reader
	max int
	buf []byte
}

// NewReader reads frames from r; a frame over max payload bytes is an
// error (the peer is broken or hostile, and the lane must be dropped).
func NewReader(r io.Reader, max int) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// Read returns the next frame. io.EOF means the peer closed the lane
// between frames; a frame cut short is io.ErrUnexpectedEOF.
func (r *Reader) Read() (Frame, error) {
	var h [HeaderBytes]byte
	if _, err := io.ReadFull(r.r, h[:]); err != nil {
		return Frame{}, err
	}
	n := binary.BigEndian.Uint32(h[0:4])
	f := Frame{ID: binary.BigEndian.Uint64(h[4:12]), Kind: h[12]}
	if f.Kind < Request || f.Kind > Status {
		return Frame{}, fmt.Errorf("record lane: frame %d has kind %d, which is none of request, response or status", f.ID, f.Kind)
	}
	if uint64(n) > uint64(r.max) {
		return Frame{}, fmt.Errorf("record lane: frame %d declares %d payload bytes, over the limit of %d", f.ID, n, r.max)
	}
	if cap(r.buf) < int(n) {
		r.buf = make([]byte, n)
	}
	f.Payload = r.buf[:n]
	if _, err := io.ReadFull(r.r, f.Payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, fmt.Errorf("record lane: frame %d: %w", f.ID, err)
	}
	return f, nil
}

// Pair makes a lane's two ends for a launch: the host's as a net.Conn, the
// plugin's as the file its process inherits (close-on-exec in this one).
func Pair() (host net.Conn, plugin *os.File, err error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("record lane: %w", err)
	}
	hf := os.NewFile(uintptr(fds[0]), "lane (host)")
	defer hf.Close()
	if host, err = net.FileConn(hf); err != nil {
		syscall.Close(fds[1])
		return nil, nil, fmt.Errorf("record lane: %w", err)
	}
	return host, os.NewFile(uintptr(fds[1]), "lane (plugin)"), nil
}
