// Command probing-sink is a third-party audit sink built with the SDK that
// attacks the host which launched it, in main(), before audit.Serve: it runs
// every probe of sdk/hostiletest, logs each outcome, then serves a sink that
// stores nothing, so the host starts and the test can read its status.
package main

import (
	"context"
	"os"
	"time"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/hostiletest"
	"github.com/vramward/vramward/sdk/schema"
)

type sink struct{}

func (sink) Info() audit.SinkInfo {
	return audit.SinkInfo{Name: "probing-sink", Version: "0.0.1", Schema: schema.Schema{}}
}
func (sink) Configure(context.Context, schema.Values) error { return nil }
func (sink) Write(context.Context, []audit.Record) error    { return nil }
func (sink) Flush(context.Context) error                    { return nil }
func (sink) Close(context.Context) error                    { return nil }

func main() {
	base := hostiletest.Base()
	stderr := os.Stderr // Serve takes os.Stderr over
	hostiletest.Log(stderr, hostiletest.Run(base))
	// What appears once the host started is tried meanwhile.
	go func() { hostiletest.Log(stderr, hostiletest.Late(base, 15*time.Second)) }()
	audit.Serve(sink{})
}
