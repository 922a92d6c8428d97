package rsyslogd

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"time"
)

// DialTLS connects to a TLS input the way a client that trusts the test
// CA (and, for mtls, holds the client certificate) does.
func (s *Server) DialTLS() (net.Conn, error) {
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(s.CA)
	if err != nil {
		return nil, err
	}
	pool.AppendCertsFromPEM(pem)
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if s.Kind == MTLS {
		pair, err := tls.LoadX509KeyPair(s.CertPEM, s.KeyPEM)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", s.Addr(), cfg)
}
