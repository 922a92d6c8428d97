package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vramward/vramward/sdk/audittest/rsyslogd"
)

// relayConfig is deploy/rsyslog/relay.conf with the test's certificates,
// ports and directory, and the rsyslogd helper's readiness probes routed to
// its output file.
func relayConfig(t *testing.T, fleetDir string) func(s *rsyslogd.Server) string {
	src, err := os.ReadFile("../../../deploy/rsyslog/relay.conf")
	if err != nil {
		t.Fatal(err)
	}
	relp := freeTCPPort(t)
	return func(s *rsyslogd.Server) string {
		conf := strings.NewReplacer(
			"/etc/rsyslog.d/tls/ca.pem", s.CA,
			"/etc/rsyslog.d/tls/relay.pem", filepath.Join(s.Dir, "server.pem"),
			"/etc/rsyslog.d/tls/relay.key", filepath.Join(s.Dir, "server.key"),
			`port="6514"`, fmt.Sprintf(`address="127.0.0.1" port="%d"`, s.Port),
			`port="2514"`, fmt.Sprintf(`address="127.0.0.1" port="%d"`, relp),
			"/var/log/vramward-fleet", fleetDir,
		).Replace(string(src))
		conf = strings.Replace(conf, "global(\n", fmt.Sprintf("global(\n  workDirectory=%q\n", filepath.Join(s.Dir, "work")), 1)
		probe := fmt.Sprintf("ruleset(name=\"vramward-fleet\") {\n  if $msg contains %q then {\n    action(type=\"omfile\" file=%q template=\"vramward-raw\" flushOnTXEnd=\"on\")\n    stop\n  }\n", rsyslogd.ProbeTag, s.Out)
		return strings.Replace(conf, "ruleset(name=\"vramward-fleet\") {\n", probe, 1)
	}
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestFleetThroughARelay: three hosts send their trails over mutual TLS to
// an rsyslogd running the shipped relay config (checked with rsyslogd -N1);
// `audit verify -fleet` verifies each node's file against the inventory of
// public keys, then fails a node whose file was edited at the relay and an
// inventoried node without a trail.
func TestFleetThroughARelay(t *testing.T) {
	fleetDir := t.TempDir()
	srv := rsyslogd.StartWith(t, rsyslogd.MTLS, relayConfig(t, fleetDir))
	if out, err := exec.Command(rsyslogd.Binary(t), "-N1", "-f", filepath.Join(srv.Dir, "rsyslog.conf")).CombinedOutput(); err != nil {
		t.Fatalf("rsyslogd -N1 on the relay config: %v\n%s", err, out)
	}
	var inventory bytes.Buffer
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("node-%d", i)
		dir := t.TempDir()
		cfg := writeConfig(t, dir, fmt.Sprintf(`
plugin "audit-syslog" {
  kind    = "audit_sink"
  path    = %q
  network = true
}
`, syslogBin))
		replaceInFile(t, cfg, `id         = "e2e"`, fmt.Sprintf(`id         = %q`, id))
		replaceInFile(t, cfg, "audit {\n", fmt.Sprintf(`audit {
  sink "relay" {
    plugin = "audit-syslog"
    config {
      transport       = "tls"
      address         = %q
      tls_ca_file     = %q
      tls_server_name = "localhost"
      tls_cert_file   = %q
      tls_key_file    = %q
      hostname        = %q
    }
  }
`, srv.Addr(), srv.CA, srv.CertPEM, srv.KeyPEM, id))
		runOnce(t, dir, 300*time.Millisecond, syscall.SIGTERM)
		local := readLines(t, filepath.Join(dir, "trail", "audit.log"))
		relayed := filepath.Join(fleetDir, id+".log")
		waitFor(t, func() bool {
			data, _ := os.ReadFile(relayed)
			return bytes.Count(data, []byte("\n")) == len(local)
		})
		pub, err := os.ReadFile(filepath.Join(dir, "state", "audit.pub"))
		must(t, err)
		fmt.Fprintf(&inventory, "%s %s", id, pub)
	}
	keys := filepath.Join(t.TempDir(), "fleet.keys")
	must(t, os.WriteFile(keys, inventory.Bytes(), 0o600))
	code, out := verifyRun(t, "-fleet", fleetDir, "-keys", keys)
	if code != 0 || strings.Count(out, "\tOK\t") != 3 {
		t.Fatalf("the fleet does not verify (exit %d):\n%s", code, out)
	}
	// One node's file edited at the relay, and a node with no trail.
	lines := readLines(t, filepath.Join(fleetDir, "node-2.log"))
	lines[1] = strings.Replace(lines[1], `"pid":`, `"pid":1`, 1)
	writeLines(t, filepath.Join(fleetDir, "node-2.log"), lines)
	other := t.TempDir()
	writeConfig(t, other, "")
	replaceInFile(t, filepath.Join(other, "vramward.hcl"), `id         = "e2e"`, `id         = "node-4"`)
	runOnce(t, other, 100*time.Millisecond, syscall.SIGTERM)
	pub4, err := os.ReadFile(filepath.Join(other, "state", "audit.pub"))
	must(t, err)
	f, err := os.OpenFile(keys, os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	fmt.Fprintf(f, "node-4 %s", pub4)
	f.Close()
	code, out = verifyRun(t, "-fleet", fleetDir, "-keys", keys)
	if code != 1 || !strings.Contains(out, "node-2\tFAILED\t") || !strings.Contains(out, "node-4\tMISSING") || strings.Count(out, "\tOK\t") != 2 {
		t.Fatalf("a tampered node and a missing one (exit %d):\n%s", code, out)
	}
}
