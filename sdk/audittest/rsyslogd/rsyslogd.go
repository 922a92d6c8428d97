// Package rsyslogd runs a real rsyslogd for the tests of syslog sinks (the
// audit-syslog plugin's, the host's end-to-end ones, a third party's): one
// input on loopback (or a socket in a temporary directory), a generated
// config, and every message it receives written raw, one a line, to a file
// the test reads. Tests start and stop it themselves and never touch a
// system instance.
package rsyslogd

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Inputs.
const (
	UDP        = "udp"
	TCP        = "tcp"
	TLS        = "tls"     // imtcp with the gtls driver
	MTLS       = "mtls"    // tls that requires a client certificate
	UnixDgram  = "unix"    // imuxsock on a temporary socket
	UnixStream = "ustream" // imptcp on a temporary socket
	RELP       = "relp"    // imrelp (package rsyslog-relp)
)

// ProbeTag marks the readiness probes, which Lines leaves out.
const ProbeTag = "rsyslogd-test-probe"

// Server is one rsyslogd process.
type Server struct {
	Kind    string
	Dir     string
	Port    int    // udp, tcp, tls
	Socket  string // unix, ustream
	Out     string // received messages, raw, one a line
	CA      string // tls: the CA that signed the server (and client) certificate
	CertPEM string // mtls: a client certificate and key the server accepts
	KeyPEM  string
	conf    string
	cmd     *exec.Cmd
	done    chan struct{}
}

// Binary finds rsyslogd, failing the test when it is missing under CI.
func Binary(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"rsyslogd", "/usr/sbin/rsyslogd"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("VRAMWARD_CI") != "" {
		t.Fatal("rsyslogd is not installed (.ci/run installs rsyslog and rsyslog-gnutls)")
	}
	t.Skip("rsyslogd is not installed")
	return ""
}

// Start runs rsyslogd with one input of kind and waits until it takes
// messages. It is stopped in t.Cleanup.
func Start(t testing.TB, kind string) *Server {
	t.Helper()
	return StartWith(t, kind, nil)
}

// StartWith is Start with a config of the caller's: config gets the
// server (its directory, port, socket, certificates and output file) and
// returns the rsyslog.conf text. The config must write what the input
// receives, raw, to s.Out.
func StartWith(t testing.TB, kind string, config func(s *Server) string) *Server {
	t.Helper()
	bin := Binary(t)
	dir, err := os.MkdirTemp("", "rsyslogd-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &Server{Kind: kind, Dir: dir, Out: filepath.Join(dir, "out.log")}
	if err := os.Mkdir(filepath.Join(dir, "work"), 0o700); err != nil {
		t.Fatal(err)
	}
	switch kind {
	case UnixDgram:
		s.Socket = filepath.Join(dir, "log.sock")
	case UnixStream:
		s.Socket = filepath.Join(dir, "stream.sock")
	case UDP:
		s.Port = freePort(t, "udp")
	default:
		s.Port = freePort(t, "tcp")
	}
	if kind == TLS || kind == MTLS {
		s.makeCerts(t)
	}
	if matches, _ := filepath.Glob("/usr/lib/*/rsyslog/imrelp.so"); kind == RELP && len(matches) == 0 {
		if os.Getenv("VRAMWARD_CI") != "" {
			t.Fatal("rsyslog's imrelp is not installed (.ci/run installs rsyslog-relp)")
		}
		t.Skip("rsyslog's imrelp is not installed (package rsyslog-relp)")
	}
	s.conf = filepath.Join(dir, "rsyslog.conf")
	text := s.config()
	if config != nil {
		text = config(s)
	}
	if err := os.WriteFile(s.conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	s.start(t, bin)
	t.Cleanup(func() { s.Stop(t) })
	return s
}

func (s *Server) config() string {
	var b strings.Builder
	g := fmt.Sprintf(`global(workDirectory=%q maxMessageSize="1m"`, filepath.Join(s.Dir, "work"))
	if s.CA != "" {
		g += fmt.Sprintf(` defaultNetstreamDriverCAFile=%q defaultNetstreamDriverCertFile=%q defaultNetstreamDriverKeyFile=%q`,
			s.CA, filepath.Join(s.Dir, "server.pem"), filepath.Join(s.Dir, "server.key"))
	}
	b.WriteString(g + ")\n")
	switch s.Kind {
	case UDP:
		fmt.Fprintf(&b, "module(load=\"imudp\")\ninput(type=\"imudp\" address=\"127.0.0.1\" port=\"%d\")\n", s.Port)
	case TCP:
		fmt.Fprintf(&b, "module(load=\"imtcp\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"%d\" maxFrameSize=\"2000000\")\n", s.Port)
	case TLS, MTLS:
		auth := "anon"
		if s.Kind == MTLS {
			auth = "x509/certvalid"
		}
		fmt.Fprintf(&b, "module(load=\"imtcp\" streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=%q)\n", auth)
		fmt.Fprintf(&b, "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"%d\" maxFrameSize=\"2000000\")\n", s.Port)
	case UnixDgram:
		fmt.Fprintf(&b, "module(load=\"imuxsock\" sysSock.use=\"off\")\ninput(type=\"imuxsock\" socket=%q)\n", s.Socket)
	case UnixStream:
		fmt.Fprintf(&b, "module(load=\"imptcp\")\ninput(type=\"imptcp\" path=%q unlink=\"on\")\n", s.Socket)
	case RELP:
		fmt.Fprintf(&b, "module(load=\"imrelp\")\ninput(type=\"imrelp\" address=\"127.0.0.1\" port=\"%d\" maxDataSize=\"2000000\")\n", s.Port)
	}
	fmt.Fprintf(&b, "template(name=\"raw\" type=\"string\" string=\"%%rawmsg%%\\n\")\n")
	fmt.Fprintf(&b, "action(type=\"omfile\" file=%q template=\"raw\" flushOnTXEnd=\"on\")\n", s.Out)
	return b.String()
}

func (s *Server) start(t testing.TB, bin string) {
	t.Helper()
	s.cmd = exec.Command(bin, "-n", "-f", s.conf, "-i", filepath.Join(s.Dir, "rsyslogd.pid"))
	log, err := os.OpenFile(filepath.Join(s.Dir, "rsyslogd.stderr"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	log.Close()
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(s.cmd, s.done)
	s.waitReady(t)
}

// waitReady sends probes until one is written out: only then is the input
// surely listening.
func (s *Server) waitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			t.Fatalf("rsyslogd exited at start:\n%s", s.stderr())
		default:
		}
		s.probe()
		if b, _ := os.ReadFile(s.Out); strings.Contains(string(b), ProbeTag) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("rsyslogd (%s) did not take a message within 15s:\n%s", s.Kind, s.stderr())
}

func (s *Server) probe() {
	msg := "<14>1 - - vramward - - - " + ProbeTag
	var c net.Conn
	var err error
	switch s.Kind {
	case UDP:
		c, err = net.Dial("udp", s.Addr())
	case TCP:
		c, err = net.Dial("tcp", s.Addr())
		msg = strconv.Itoa(len(msg)) + " " + msg
	case UnixDgram:
		c, err = net.Dial("unixgram", s.Socket)
	case UnixStream:
		c, err = net.Dial("unix", s.Socket)
		msg = strconv.Itoa(len(msg)) + " " + msg
	case TLS, MTLS:
		c, err = s.DialTLS()
		msg = strconv.Itoa(len(msg)) + " " + msg
	case RELP:
		c, err = net.Dial("tcp", s.Addr())
		open := "relp_version=0\nrelp_software=probe\ncommands=syslog"
		msg = fmt.Sprintf("1 open %d %s\n2 syslog %d %s\n", len(open), open, len(msg), msg)
		if err == nil {
			// The session must stay open until the message is taken.
			_, _ = c.Write([]byte(msg))
			buf := make([]byte, 512)
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			for got := ""; !strings.Contains(got, "2 rsp"); {
				n, rerr := c.Read(buf)
				got += string(buf[:n])
				if rerr != nil {
					break
				}
			}
			c.Close()
			return
		}
	}
	if err != nil {
		return
	}
	_, _ = c.Write([]byte(msg))
	c.Close()
}

// Addr is the loopback host:port of an IP input.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

func (s *Server) stderr() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "rsyslogd.stderr"))
	return string(b)
}

// Stop ends rsyslogd with SIGTERM (it writes out what it holds) and waits.
func (s *Server) Stop(t testing.TB) {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// Restart stops rsyslogd and starts it again on the same input.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop(t)
	s.start(t, Binary(t))
}

// Lines returns the messages received so far, probes left out.
func (s *Server) Lines() []string {
	f, err := os.Open(s.Out)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if !strings.Contains(sc.Text(), ProbeTag) {
			out = append(out, sc.Text())
		}
	}
	return out
}

// WaitLines waits until at least n messages arrived and returns them; it
// fails the test after timeout.
func (s *Server) WaitLines(t testing.TB, n int, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		lines := s.Lines()
		if len(lines) >= n {
			return lines
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsyslogd received %d messages, want %d", len(lines), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort(t testing.TB, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// makeCerts writes a CA, a server certificate for "localhost" and
// 127.0.0.1, and a client certificate, all signed by the CA.
func (s *Server) makeCerts(t testing.TB) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vramward test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	s.CA = filepath.Join(s.Dir, "ca.pem")
	writePEM(t, s.CA, "CERTIFICATE", caDER)
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) ([]byte, []byte) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			DNSNames: []string{name}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(key)
		return der, kder
	}
	der, kder := leaf("localhost", 2, x509.ExtKeyUsageServerAuth)
	writePEM(t, filepath.Join(s.Dir, "server.pem"), "CERTIFICATE", der)
	writePEM(t, filepath.Join(s.Dir, "server.key"), "EC PRIVATE KEY", kder)
	der, kder = leaf("vramward-client", 3, x509.ExtKeyUsageClientAuth)
	s.CertPEM, s.KeyPEM = filepath.Join(s.Dir, "client.pem"), filepath.Join(s.Dir, "client.key")
	writePEM(t, s.CertPEM, "CERTIFICATE", der)
	writePEM(t, s.KeyPEM, "EC PRIVATE KEY", kder)
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
