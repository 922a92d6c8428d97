package transport

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// RELP is rsyslog's Reliable Event Logging Protocol over TCP: every message
// is a command the receiver answers once it has taken it, so a send
// returns only when the receiver acknowledged every message, not when the
// kernel accepted the bytes.
const RELP = "relp"

// relpWindow is how many messages may await their acknowledgement.
const relpWindow = 128

// maxRelpFrame bounds a response frame; receivers answer "200 OK".
const maxRelpFrame = 64 << 10

type relpConn struct {
	c    net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	txnr int
}

func (r *relpConn) next() int {
	r.txnr++
	if r.txnr > 999999999 {
		r.txnr = 1
	}
	return r.txnr
}

func (r *relpConn) writeFrame(txnr int, cmd string, data []byte) {
	r.w.WriteString(strconv.Itoa(txnr))
	r.w.WriteByte(' ')
	r.w.WriteString(cmd)
	r.w.WriteByte(' ')
	r.w.WriteString(strconv.Itoa(len(data)))
	if len(data) > 0 {
		r.w.WriteByte(' ')
		r.w.Write(data)
	}
	r.w.WriteByte('\n')
}

// readFrame reads one frame: TXNR SP COMMAND SP DATALEN [SP DATA] LF.
func (r *relpConn) readFrame() (txnr int, cmd string, data []byte, err error) {
	// field reads up to a space or, for the data length, a newline, and
	// says which ended it.
	field := func() (string, byte, error) {
		var b []byte
		for len(b) < 32 {
			c, err := r.r.ReadByte()
			if err != nil {
				return "", 0, err
			}
			if c == ' ' || c == '\n' {
				return string(b), c, nil
			}
			b = append(b, c)
		}
		return "", 0, errors.New("relp: malformed frame header")
	}
	s, sep, err := field()
	if err != nil {
		return 0, "", nil, err
	}
	if txnr, err = strconv.Atoi(s); err != nil || sep != ' ' {
		return 0, "", nil, fmt.Errorf("relp: bad txnr %q", s)
	}
	if cmd, sep, err = field(); err != nil {
		return 0, "", nil, err
	}
	if sep != ' ' {
		return 0, "", nil, fmt.Errorf("relp: frame %d has no data length", txnr)
	}
	if s, sep, err = field(); err != nil {
		return 0, "", nil, err
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > maxRelpFrame {
		return 0, "", nil, fmt.Errorf("relp: bad data length %q", s)
	}
	if n == 0 {
		if sep != '\n' {
			return 0, "", nil, errors.New("relp: frame without its trailer")
		}
		return txnr, cmd, nil, nil
	}
	if sep != ' ' {
		return 0, "", nil, errors.New("relp: malformed frame")
	}
	data = make([]byte, n)
	if _, err := io.ReadFull(r.r, data); err != nil {
		return 0, "", nil, err
	}
	if c, err := r.r.ReadByte(); err != nil || c != '\n' {
		return 0, "", nil, errors.New("relp: frame without its trailer")
	}
	return txnr, cmd, data, nil
}

// ack reads the response to txnr: responses come in command order.
func (r *relpConn) ack(want int) error {
	txnr, cmd, data, err := r.readFrame()
	switch {
	case errors.Is(err, io.EOF):
		return ErrClosedByPeer
	case err != nil:
		return err
	case cmd == "serverclose":
		return ErrClosedByPeer
	case cmd != "rsp" || txnr != want:
		return fmt.Errorf("relp: got %s %d while waiting for the answer to %d", cmd, txnr, want)
	case !bytes.HasPrefix(data, []byte("200")):
		return fmt.Errorf("relp: the receiver refused message %d: %s", want, firstLine(data))
	}
	return nil
}

func firstLine(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func dialRELP(cfg Config) (*relpConn, net.Conn, error) {
	c, err := (&net.Dialer{Timeout: cfg.DialTimeout}).Dial("tcp", cfg.Address)
	if err != nil {
		return nil, nil, err
	}
	r := &relpConn{c: c, r: bufio.NewReaderSize(c, 4096), w: bufio.NewWriterSize(c, 64<<10)}
	if cfg.DialTimeout > 0 {
		_ = c.SetDeadline(time.Now().Add(cfg.DialTimeout))
	}
	r.writeFrame(r.next(), "open", []byte("relp_version=0\nrelp_software=vramward\ncommands=syslog"))
	if err := r.w.Flush(); err != nil {
		c.Close()
		return nil, nil, err
	}
	if err := r.ack(r.txnr); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("relp open: %w", err)
	}
	_ = c.SetDeadline(time.Time{})
	return r, c, nil
}

// send writes the messages as syslog commands, up to relpWindow ahead of
// their acknowledgements, and returns how many the receiver acknowledged,
// in order.
func (r *relpConn) send(msgs [][]byte, timeout time.Duration) (int, error) {
	if timeout > 0 {
		_ = r.c.SetDeadline(time.Now().Add(timeout))
		defer r.c.SetDeadline(time.Time{})
	}
	var pending []int
	acked, written := 0, 0
	for acked < len(msgs) {
		for written < len(msgs) && len(pending) < relpWindow {
			t := r.next()
			r.writeFrame(t, "syslog", msgs[written])
			pending = append(pending, t)
			written++
		}
		if err := r.w.Flush(); err != nil {
			return acked, err
		}
		if err := r.ack(pending[0]); err != nil {
			return acked, err
		}
		pending = pending[1:]
		acked++
	}
	return acked, nil
}

// close ends the session politely (best effort).
func (r *relpConn) close() error {
	_ = r.c.SetDeadline(time.Now().Add(time.Second))
	r.writeFrame(r.next(), "close", nil)
	if r.w.Flush() == nil {
		_ = r.ack(r.txnr)
	}
	return r.c.Close()
}
