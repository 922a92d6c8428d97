// Package transport carries syslog messages to a receiver: datagrams over
// a unix socket or UDP (one message a datagram), a stream over a unix
// socket, TCP or TLS with octet-counting framing (RFC 6587 3.4.1, RFC 5425)
// or, as an option, non-transparent framing (a newline after each message),
// or RELP, where the receiver acknowledges each message.
package transport

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Networks.
const (
	UnixDgram  = "unixgram"
	UnixStream = "unix"
	UDP        = "udp"
	TCP        = "tcp"
	TLS        = "tls"
)

// Framings of stream transports.
const (
	OctetCounting  = "octet-counting"
	NonTransparent = "non-transparent"
)

// MaxDatagram is the largest UDP payload over IPv4.
const MaxDatagram = 65507

// Config says where and how to send.
type Config struct {
	Network string
	Address string
	Framing string // stream transports only
	TLS     *tls.Config
	// DialTimeout bounds a connect (and the TLS handshake), WriteTimeout
	// one Send, so that a stuck receiver fails a flush instead of hanging
	// it.
	DialTimeout, WriteTimeout time.Duration
}

// Stream reports whether the transport is a byte stream (needs framing).
func (c Config) Stream() bool {
	return c.Network == UnixStream || c.Network == TCP || c.Network == TLS
}

// Conn is one connection to the receiver.
type Conn struct {
	cfg  Config
	c    net.Conn
	w    *bufio.Writer // streams only
	relp *relpConn     // relp only
}

// Dial connects.
func Dial(cfg Config) (*Conn, error) {
	d := net.Dialer{Timeout: cfg.DialTimeout}
	var (
		c   net.Conn
		err error
	)
	switch cfg.Network {
	case RELP:
		r, c, err := dialRELP(cfg)
		if err != nil {
			return nil, err
		}
		return &Conn{cfg: cfg, c: c, relp: r}, nil
	case TLS:
		c, err = tls.DialWithDialer(&d, "tcp", cfg.Address, cfg.TLS)
	case UnixDgram, UnixStream, UDP, TCP:
		c, err = d.Dial(cfg.Network, cfg.Address)
	default:
		return nil, fmt.Errorf("unknown transport %q", cfg.Network)
	}
	if err != nil {
		return nil, err
	}
	conn := &Conn{cfg: cfg, c: c}
	if cfg.Stream() {
		conn.w = bufio.NewWriterSize(c, 64<<10)
	}
	return conn, nil
}

// ErrClosedByPeer: the receiver closed the stream (it stopped or
// restarted). Anything written now would be lost, so nothing is.
var ErrClosedByPeer = errors.New("the receiver closed the connection")

// Send writes each message, framed; it returns how many were handed to the
// kernel in full. On error the connection is unusable and a message may
// have been cut: the caller closes it and sends that message again on a
// new one.
func (c *Conn) Send(msgs [][]byte) (int, error) {
	if c.relp != nil {
		return c.relp.send(msgs, c.cfg.WriteTimeout)
	}
	if c.cfg.WriteTimeout > 0 {
		if err := c.c.SetWriteDeadline(time.Now().Add(c.cfg.WriteTimeout)); err != nil {
			return 0, err
		}
	}
	if !c.cfg.Stream() {
		for i, m := range msgs {
			if _, err := c.c.Write(m); err != nil {
				return i, err
			}
		}
		return len(msgs), nil
	}
	if err := c.peerClosed(); err != nil {
		return 0, err
	}
	// Messages are counted as sent only once the buffer holding them is
	// written out.
	sent := 0
	for i, m := range msgs {
		if c.w.Available() < len(m)+12 && c.w.Buffered() > 0 {
			if err := c.w.Flush(); err != nil {
				return sent, err
			}
			sent = i
		}
		if c.cfg.Framing == NonTransparent {
			c.w.Write(m)
			c.w.WriteByte('\n')
		} else {
			var n [20]byte
			c.w.Write(strconv.AppendInt(n[:0], int64(len(m)), 10))
			c.w.WriteByte(' ')
			c.w.Write(m)
		}
	}
	if err := c.w.Flush(); err != nil {
		return sent, err
	}
	return len(msgs), nil
}

// peerClosed looks, without waiting, for the receiver's end of the stream.
// A syslog receiver never sends on a plain stream, so a readable end of
// file is its FIN. The socket is peeked, not read, so a TLS connection's
// records stay where crypto/tls expects them; when a TLS receiver did send
// something (a session ticket, a close_notify), a short read lets
// crypto/tls take it and report a close.
func (c *Conn) peerClosed() error {
	rc, err := c.socket()
	if rc == nil {
		return err
	}
	var n int
	var perr error
	var b [1]byte
	if err := rc.Read(func(fd uintptr) bool {
		n, _, perr = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return true // never wait
	}); err != nil {
		return err
	}
	switch {
	case errors.Is(perr, unix.EAGAIN):
		return nil
	case perr != nil:
		return perr
	case n == 0:
		return ErrClosedByPeer
	}
	if _, ok := c.c.(*tls.Conn); !ok {
		return nil // a plain receiver sent bytes; not ours to judge
	}
	if err := c.c.SetReadDeadline(time.Now().Add(time.Millisecond)); err != nil {
		return err
	}
	var buf [256]byte
	_, err = c.c.Read(buf[:])
	_ = c.c.SetReadDeadline(time.Time{})
	var ne net.Error
	switch {
	case err == nil, errors.As(err, &ne) && ne.Timeout():
		return nil
	case errors.Is(err, io.EOF):
		return ErrClosedByPeer
	}
	return err
}

// ErrNotAcked is a TCP receiver that did not acknowledge what was sent
// within the write timeout: a blackholed or stalled receiver, whose bytes
// are still in the kernel's send buffer and would be lost with the
// connection.
var ErrNotAcked = errors.New("the receiver did not acknowledge what was sent")

// WaitAcked waits until the receiver's TCP stack has acknowledged every
// byte sent (the kernel's SIOCOUTQ is 0), up to timeout (none: a minute).
// Only then is a message past this node: before, a receiver that vanished
// without a reset would take it with the connection. Transports that
// cannot tell (UDP, unix sockets) or that acknowledge each message
// themselves (RELP) return at once.
func (c *Conn) WaitAcked(timeout time.Duration) error {
	if c.relp != nil || (c.cfg.Network != TCP && c.cfg.Network != TLS) {
		return nil
	}
	rc, err := c.socket()
	if rc == nil {
		return err
	}
	if timeout <= 0 {
		timeout = time.Minute
	}
	deadline := time.Now().Add(timeout)
	for wait := 20 * time.Microsecond; ; wait = min(wait*2, 2*time.Millisecond) {
		var n int
		var ierr error
		if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil {
			return err
		}
		if ierr != nil {
			return fmt.Errorf("SIOCOUTQ: %w", ierr)
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %d bytes unacknowledged after %s", ErrNotAcked, n, timeout)
		}
		time.Sleep(wait)
	}
}

// socket is the connection's socket, under TLS the TCP one; nil (and no
// error) when the connection has none to reach.
func (c *Conn) socket() (syscall.RawConn, error) {
	raw := c.c
	if t, ok := raw.(*tls.Conn); ok {
		raw = t.NetConn()
	}
	sc, ok := raw.(syscall.Conn)
	if !ok {
		return nil, nil
	}
	return sc.SyscallConn()
}

// Close closes the connection.
func (c *Conn) Close() error {
	if c.relp != nil {
		return c.relp.close()
	}
	return c.c.Close()
}
