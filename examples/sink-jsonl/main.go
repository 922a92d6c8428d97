// Command sink-jsonl is a complete audit sink in forty lines: it appends
// every record, byte for byte as the host made it, to one file. Serve does
// the rest: the RPCs, a flush after every CRITICAL event, the final flush
// and close on every way out of the process.
package main

import (
	"context"
	"os"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/schema"
)

type sink struct {
	f    *os.File
	seen *audit.ResendWindow // what is stored, so the host's re-sends are skipped
}

func (s *sink) Info() audit.SinkInfo {
	return audit.SinkInfo{Name: "sink-jsonl", Version: "0.1.0", Schema: schema.Schema{
		{Name: "path", Type: schema.String, Required: true, Path: schema.WrittenFile, Description: "the file records are appended to"},
	}}
}

func (s *sink) Configure(_ context.Context, cfg schema.Values) (err error) {
	if s.f, err = os.OpenFile(cfg.String("path"), os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600); err != nil {
		return err
	}
	s.seen = audit.NewResendWindow(4096)
	return s.seen.Learn(s.f) // an earlier run's records (the whole file: fine for an example)
}

// Write hands the records to the kernel before it returns: that is what an
// acknowledgement promises (a crash of this process loses nothing).
func (s *sink) Write(_ context.Context, records []audit.Record) error {
	var b []byte
	for _, r := range records {
		if !s.seen.Has(r.Seq, r.Chain.Hash) {
			b = append(append(b, r.Line...), '\n')
		}
	}
	if _, err := s.f.Write(b); err != nil {
		return err
	}
	for _, r := range records {
		s.seen.Add(r.Seq, r.Chain.Hash)
	}
	return nil
}

func (s *sink) Flush(context.Context) error { return s.f.Sync() } // durable, for CRITICAL events
func (s *sink) Close(context.Context) error { return s.f.Close() }

func main() { audit.Serve(&sink{}) }
