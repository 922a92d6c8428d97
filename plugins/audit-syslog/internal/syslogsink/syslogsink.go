// Package syslogsink is the audit-syslog plugin's Sink: each event becomes
// one RFC 5424 message sent to a syslog receiver over a unix socket, UDP,
// TCP or TLS. Write returns only when the messages are written to the
// socket; while the receiver is away they are held in a bounded buffer
// (the write fails, so the host counts it and keeps the events too) and
// sent, in order, on reconnect.
package syslogsink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vramward/vramward/plugins/audit-syslog/internal/rfc5424"
	"github.com/vramward/vramward/plugins/audit-syslog/internal/transport"
	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/sandbox"
	"github.com/vramward/vramward/sdk/schema"
	"github.com/vramward/vramward/sdk/version"
)

// Transports as the config names them.
var transports = map[string]string{
	"unix": transport.UnixDgram, "unix-stream": transport.UnixStream,
	"udp": transport.UDP, "tcp": transport.TCP, "tls": transport.TLS, "relp": transport.RELP,
}

// Defaults of the config schema.
const (
	DefaultTransport       = "unix"
	DefaultUnixAddress     = "/dev/log"
	DefaultFacility        = "auth"
	DefaultAppName         = "vramward"
	DefaultSDID            = "vramward@32473"
	DefaultMaxMessageBytes = 8192 // rsyslog's default maxMessageSize
	DefaultBufferBytes     = 8 << 20
	DefaultFlushInterval   = time.Second
	DefaultTimeout         = 5 * time.Second
	// Reconnects back off from minBackoff, doubling to maxBackoff: a
	// receiver that comes back is found within a second (one dial a second
	// to a receiver that is down costs nothing worth saving).
	minBackoff = 100 * time.Millisecond
	maxBackoff = time.Second
	// dedupeWindow seqs are remembered to skip the host's re-sends.
	dedupeWindow = 65536
)

// Schema is the plugin's config block.
var Schema = schema.Schema{
	{Name: "transport", Type: schema.String, Default: DefaultTransport,
		Description: "unix (datagram), unix-stream, udp, tcp, tls or relp"},
	{Name: "address", Type: schema.String, Default: "",
		Description: "socket path (unix, unix-stream; default /dev/log) or host:port"},
	{Name: "framing", Type: schema.String, Default: transport.OctetCounting,
		Description: "stream transports: octet-counting (RFC 6587/5425) or non-transparent (newline after each message)"},
	{Name: "facility", Type: schema.String, Default: DefaultFacility, Description: "syslog facility name"},
	{Name: "app_name", Type: schema.String, Default: DefaultAppName, Description: "APP-NAME"},
	{Name: "hostname", Type: schema.String, Default: "", Description: "HOSTNAME (default: this host's name)"},
	{Name: "sd_id", Type: schema.String, Default: DefaultSDID, Description: "SD-ID of the envelope's structured data: name@PEN"},
	{Name: "max_message_bytes", Type: schema.Int, Default: int64(DefaultMaxMessageBytes),
		Description: "largest message; a bigger event is sent shortened, marked and counted"},
	{Name: "buffer_bytes", Type: schema.Int, Default: int64(DefaultBufferBytes),
		Description: "messages held while the receiver is away"},
	{Name: "flush_interval", Type: schema.Duration, Default: DefaultFlushInterval,
		Description: "how often held messages are retried"},
	{Name: "timeout", Type: schema.Duration, Default: DefaultTimeout, Description: "bound on a connect or a write"},
	{Name: "tls_ca_file", Type: schema.String, Default: "", Path: schema.ReadFile, Description: "tls: PEM CA bundle that signs the receiver (default: the system's)"},
	{Name: "tls_cert_file", Type: schema.String, Default: "", Path: schema.ReadFile, Description: "tls: client certificate (PEM)"},
	{Name: "tls_key_file", Type: schema.String, Default: "", Path: schema.ReadFile, Description: "tls: client key (PEM)"},
	{Name: "tls_server_name", Type: schema.String, Default: "", Description: "tls: name the receiver's certificate must hold (default: the address's host)"},
}

type pending struct {
	seq  uint64
	hash []byte
	msg  []byte
}

// Sink sends events to a syslog receiver. The SDK serialises its calls.
type Sink struct {
	log      hclog.Logger
	cfg      transport.Config
	header   rfc5424.Header
	limit    int
	maxBuf   int
	interval time.Duration

	conn *transport.Conn
	pend []pending
	// pendSeq indexes pend by seq (to its chain hash), so a re-sent batch is
	// checked against what is held without scanning it.
	pendSeq   map[uint64]string
	pendBytes int
	sent      *audit.ResendWindow
	shortened uint64

	backoff  time.Duration
	nextDial time.Time
	lastErr  error
	buf      []byte
}

// New returns an unconfigured sink.
func New(logger hclog.Logger) *Sink {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Sink{log: logger, sent: audit.NewResendWindow(dedupeWindow), pendSeq: map[uint64]string{}}
}

// Info implements audit.Sink.
func (s *Sink) Info() audit.SinkInfo {
	return audit.SinkInfo{Name: "audit-syslog", Version: version.Version, Schema: Schema}
}

// FlushInterval implements audit.PeriodicFlusher: each tick retries what
// is held.
func (s *Sink) FlushInterval() time.Duration { return s.interval }

// Shortened implements audit.Shortener.
func (s *Sink) Shortened() uint64 { return s.shortened }

// Configure implements audit.Sink. It does not connect: a receiver that is
// down at start is a failed write, counted and retried, not a refused
// config.
func (s *Sink) Configure(_ context.Context, cfg schema.Values) error {
	var errs schema.Errors
	bad := func(field, format string, args ...any) {
		errs = append(errs, &schema.FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	network, ok := transports[cfg.String("transport")]
	if !ok {
		bad("transport", "want unix, unix-stream, udp, tcp, tls or relp, got %q", cfg.String("transport"))
	}
	addr := cfg.String("address")
	if addr == "" {
		if network == transport.UnixDgram || network == transport.UnixStream {
			addr = DefaultUnixAddress
		} else if ok {
			bad("address", "%s needs host:port", cfg.String("transport"))
		}
	}
	framing := cfg.String("framing")
	if framing != transport.OctetCounting && framing != transport.NonTransparent {
		bad("framing", "want octet-counting or non-transparent, got %q", framing)
	}
	s.limit = int(cfg.Int("max_message_bytes"))
	maxLimit := 1 << 20
	if network == transport.UDP {
		maxLimit = transport.MaxDatagram
	}
	if s.limit < rfc5424.MaxShortened || s.limit > maxLimit {
		bad("max_message_bytes", "must be from %d to %d for %s, got %d", rfc5424.MaxShortened, maxLimit, cfg.String("transport"), s.limit)
	}
	s.maxBuf = int(cfg.Int("buffer_bytes"))
	if s.maxBuf < s.limit {
		bad("buffer_bytes", "must hold at least one message (%d bytes), got %d", s.limit, s.maxBuf)
	}
	if s.interval = cfg.Duration("flush_interval"); s.interval <= 0 {
		bad("flush_interval", "must be positive")
	}
	timeout := cfg.Duration("timeout")
	if timeout <= 0 {
		bad("timeout", "must be positive")
	}
	hostname := cfg.String("hostname")
	if hostname == "" {
		h, _ := os.Hostname()
		hostname = rfc5424.Hostname(h)
	}
	header, err := rfc5424.NewHeader(cfg.String("facility"), hostname, cfg.String("app_name"), fmt.Sprint(os.Getpid()), cfg.String("sd_id"))
	var he *rfc5424.FieldError
	if errors.As(err, &he) {
		bad(he.Field, "%s", he.Msg)
	}
	var tlsCfg *tls.Config
	if network == transport.TLS {
		if tlsCfg, err = tlsConfig(cfg, addr); err != nil {
			bad("tls_ca_file", "%v", err)
		}
	} else if cfg.String("tls_ca_file")+cfg.String("tls_cert_file")+cfg.String("tls_key_file")+cfg.String("tls_server_name") != "" {
		bad("transport", "tls_* keys are set but the transport is %s, not tls", cfg.String("transport"))
	}
	if len(errs) > 0 {
		return errs
	}
	s.header = header
	s.cfg = transport.Config{Network: network, Address: addr, Framing: framing, TLS: tlsCfg, DialTimeout: timeout, WriteTimeout: timeout}
	s.log.Info("configured", "transport", cfg.String("transport"), "address", addr, "framing", framing)
	return nil
}

// tlsConfig: TLS 1.2 or later, the receiver's name verified against the CA
// file (or the system pool), an optional client certificate.
func tlsConfig(cfg schema.Values, addr string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.String("tls_server_name")}
	if c.ServerName == "" {
		host, _, err := splitHost(addr)
		if err != nil {
			return nil, err
		}
		c.ServerName = host
	}
	if ca := cfg.String("tls_ca_file"); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, err
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", ca)
		}
	}
	cert, key := cfg.String("tls_cert_file"), cfg.String("tls_key_file")
	if (cert == "") != (key == "") {
		return nil, errors.New("tls_cert_file and tls_key_file go together")
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, err
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}

// Write implements audit.Sink: format every new event (all or none are
// taken), then send everything held.
func (s *Sink) Write(_ context.Context, records []audit.Record) error {
	start := len(s.pend)
	size := s.pendBytes
	for i := range records {
		r := &records[i]
		if s.sent.Has(r.Seq, r.Chain.Hash) || s.held(r.Seq, r.Chain.Hash) {
			continue // a re-send of an event already sent or held
		}
		e := &r.Event
		msg, short := s.header.Message(nil, e, r.Line, s.limit)
		if short {
			s.shortened++
			s.log.Warn("event over max_message_bytes sent shortened", "seq", e.Seq, "type", e.Type, "limit", s.limit)
		}
		size += len(msg)
		if size > s.maxBuf {
			s.dropPending(start)
			return fmt.Errorf("the buffer for the receiver is full (%d bytes held, buffer_bytes %d): %w", s.pendBytes, s.maxBuf, s.disconnected())
		}
		s.pend = append(s.pend, pending{seq: e.Seq, hash: e.Chain.Hash, msg: msg})
		if len(e.Chain.Hash) > 0 {
			s.pendSeq[e.Seq] = string(e.Chain.Hash)
		}
	}
	s.pendBytes = size
	if err := s.drain(); err != nil {
		// Tell the host which of these events did reach the receiver, so
		// it keeps only the rest: a restart must not send them twice.
		n := 0
		for n < len(records) && s.sent.Has(records[n].Seq, records[n].Chain.Hash) {
			n++
		}
		if n > 0 {
			return &audit.PartialWriteError{Written: n, Err: err}
		}
		return err
	}
	return nil
}

// SandboxRules implements sandbox.Sandboxed: the sink writes no file; its
// TLS files were read at Configure (the system's CA pool, read at the first
// handshake, is allowed to every plugin).
func (s *Sink) SandboxRules() sandbox.Rules { return sandbox.Rules{} }

// dropPending takes back what a failed Write had queued from start on.
func (s *Sink) dropPending(start int) {
	for _, p := range s.pend[start:] {
		delete(s.pendSeq, p.seq)
	}
	s.pend = s.pend[:start]
}

func (s *Sink) held(seq uint64, hash []byte) bool {
	m, ok := s.pendSeq[seq]
	return ok && len(hash) > 0 && m == string(hash)
}

// Flush implements audit.Sink: it returns when every held message is
// written to the socket.
func (s *Sink) Flush(context.Context) error { return s.drain() }

// drain connects if needed (when the backoff allows) and sends what is
// held, in order.
func (s *Sink) drain() error {
	if len(s.pend) == 0 {
		return nil
	}
	if s.conn == nil {
		if time.Now().Before(s.nextDial) {
			return s.disconnected()
		}
		c, err := transport.Dial(s.cfg)
		if err != nil {
			s.failed(err)
			return s.disconnected()
		}
		s.log.Info("connected to the syslog receiver", "address", s.cfg.Address, "held", len(s.pend))
		s.conn, s.backoff, s.lastErr = c, 0, nil
	}
	msgs := make([][]byte, len(s.pend))
	for i := range s.pend {
		msgs[i] = s.pend[i].msg
	}
	n, err := s.conn.Send(msgs)
	if err == nil {
		// Over TCP a message counts as sent once the receiver's stack has
		// acknowledged it; one that is not is sent again on a new
		// connection (a receiver may then hold it twice, byte for byte).
		if err = s.conn.WaitAcked(s.cfg.WriteTimeout); err != nil {
			n = 0
		}
	}
	for _, p := range s.pend[:n] {
		s.sent.Add(p.seq, p.hash)
		s.pendBytes -= len(p.msg)
		delete(s.pendSeq, p.seq)
	}
	s.pend = append(s.pend[:0], s.pend[n:]...)
	if err != nil {
		s.conn.Close()
		s.conn = nil
		s.failed(err)
		// A receiver that closed a stream is usually restarting: try
		// again at once on the next call, then back off.
		if errors.Is(err, transport.ErrClosedByPeer) {
			s.nextDial = time.Time{}
		}
		return s.disconnected()
	}
	return nil
}

func (s *Sink) failed(err error) {
	if s.lastErr == nil || s.lastErr.Error() != err.Error() {
		s.log.Warn("syslog receiver unreachable; holding messages", "address", s.cfg.Address, "error", err, "held", len(s.pend))
	}
	s.lastErr = err
	s.backoff = min(max(s.backoff*2, minBackoff), maxBackoff)
	s.nextDial = time.Now().Add(s.backoff)
}

func (s *Sink) disconnected() error {
	if s.lastErr == nil {
		return fmt.Errorf("%d messages held for %s", len(s.pend), s.cfg.Address)
	}
	return fmt.Errorf("%d messages held for %s: %w", len(s.pend), s.cfg.Address, s.lastErr)
}

// Close implements audit.Sink: one last try to send what is held (Serve
// flushed just before), then the connection is closed. What is still held
// is reported; the host keeps its own copy of those events.
func (s *Sink) Close(context.Context) error {
	err := s.drain()
	if s.conn != nil {
		if cerr := s.conn.Close(); err == nil {
			err = cerr
		}
		s.conn = nil
	}
	if err != nil {
		return fmt.Errorf("close with messages undelivered: %w", err)
	}
	return nil
}

func splitHost(addr string) (string, string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", "", fmt.Errorf("address %q: %w", addr, err)
	}
	return host, port, nil
}
