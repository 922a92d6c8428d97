// Command vramward-plugin-audit-syslog is the RFC 5424 syslog audit sink:
// unix, udp, tcp and tls transports, octet-counting framing, a bounded
// buffer while the receiver is away. The host launches it; it is not meant
// to be run by hand.
package main

import (
	"github.com/vramward/vramward/plugins/audit-syslog/internal/syslogsink"
	"github.com/vramward/vramward/sdk/audit"
)

func main() {
	audit.Serve(syslogsink.New(audit.NewLogger("audit-syslog")), audit.WithBatchGC())
}
