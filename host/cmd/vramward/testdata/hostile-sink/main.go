// Command hostile-sink is a test plugin that answers Info with a name of
// the size its binary's name ends with (hostile-sink-SIZE): what a hostile
// third-party sink could send the host.
package main

import (
	"context"
	"os"
	"strconv"
	"strings"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/schema"
)

type sink struct{ name string }

func (s sink) Info() audit.SinkInfo {
	return audit.SinkInfo{Name: s.name, Version: "1", Schema: schema.Schema{}}
}
func (sink) Configure(context.Context, schema.Values) error { return nil }
func (sink) Write(context.Context, []audit.Record) error    { return nil }
func (sink) Flush(context.Context) error                    { return nil }
func (sink) Close(context.Context) error                    { return nil }

func main() {
	n, _ := strconv.Atoi(os.Args[0][strings.LastIndexByte(os.Args[0], '-')+1:])
	audit.Serve(sink{name: strings.Repeat("x", max(n, 1))})
}
