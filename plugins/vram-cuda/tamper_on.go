//go:build vramward_tamper

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vramward/vramward/plugins/vram-cuda/internal/core"
)

// tamperHook, in test builds only: when the file $VRAMWARD_TAMPER_FILE
// holds "shard-id offset", corrupt that byte of the shard, then write the
// outcome ("done" or the error) to the same name with ".done" appended.
func tamperHook(c *core.Core) {
	path := os.Getenv("VRAMWARD_TAMPER_FILE")
	if path == "" {
		return
	}
	// The control files stay reachable once the plugin is sandboxed.
	c.ExtraSandbox.WriteDirs = append(c.ExtraSandbox.WriteDirs, filepath.Dir(path))
	go func() {
		for range time.Tick(10 * time.Millisecond) {
			b, err := os.ReadFile(path)
			if err != nil {
				continue
			}
			if _, err := os.Stat(path + ".done"); err == nil {
				continue
			}
			var id string
			var off uint64
			if _, err = fmt.Sscan(string(b), &id, &off); err == nil {
				err = c.Corrupt(id, off)
			}
			msg := "done"
			if err != nil {
				msg = err.Error()
			}
			_ = os.WriteFile(path+".done", []byte(msg), 0o600)
		}
	}()
}
