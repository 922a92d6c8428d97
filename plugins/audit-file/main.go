// Command vramward-plugin-audit-file is the durable JSON-lines audit sink,
// run by the vramward host as a plugin.
package main

import (
	"github.com/vramward/vramward/plugins/audit-file/filesink"
	"github.com/vramward/vramward/sdk/audit"
)

func main() {
	audit.Serve(filesink.New(audit.NewLogger("audit-file")), audit.WithBatchGC())
}
