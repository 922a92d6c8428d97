// Command badsink is a JSON-lines file sink with one fault chosen by
// BADSINK, for the harness's own tests: each fault must fail the harness
// with a clear message, and "good" must pass it.
//
//	good               writes before it acknowledges, skips re-sends
//	ack-before-commit  acknowledges, then writes 300 ms later
//	drop-100th         leaves out every 100th event
//	noop-flush         keeps events in memory until Close; Flush does nothing
//	rewrite-resends    writes a re-sent event again
package main

import (
	"context"
	"os"
	"sync"
	"time"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/schema"
)

type sink struct {
	fault string
	mu    sync.Mutex
	f     *os.File
	seen  *audit.ResendWindow
	held  []byte
	n     int
}

func (s *sink) Info() audit.SinkInfo {
	return audit.SinkInfo{Name: "badsink", Version: "0.0.1", Schema: schema.Schema{
		{Name: "path", Type: schema.String, Required: true, Description: "the file records are appended to"},
	}}
}

func (s *sink) Configure(_ context.Context, cfg schema.Values) (err error) {
	if s.f, err = os.OpenFile(cfg.String("path"), os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600); err != nil {
		return err
	}
	s.seen = audit.NewResendWindow(4096)
	return s.seen.Learn(s.f)
}

func (s *sink) Write(_ context.Context, records []audit.Record) error {
	var b []byte
	for i := range records {
		r := &records[i]
		s.n++
		if s.fault != "rewrite-resends" && s.seen.Has(r.Seq, r.Chain.Hash) {
			continue
		}
		s.seen.Add(r.Seq, r.Chain.Hash)
		if s.fault == "drop-100th" && s.n%100 == 0 {
			continue
		}
		b = append(append(b, r.Line...), '\n')
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.fault {
	case "ack-before-commit":
		go func() {
			time.Sleep(300 * time.Millisecond)
			s.mu.Lock()
			defer s.mu.Unlock()
			_, _ = s.f.Write(b)
		}()
		return nil
	case "noop-flush":
		s.held = append(s.held, b...)
		return nil
	}
	_, err := s.f.Write(b)
	return err
}

func (s *sink) Flush(context.Context) error {
	if s.fault == "noop-flush" {
		return nil
	}
	return s.f.Sync()
}

func (s *sink) Close(context.Context) error {
	time.Sleep(350 * time.Millisecond) // let a late write land before the file closes
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _ = s.f.Write(s.held)
	return s.f.Close()
}

func main() { audit.Serve(&sink{fault: os.Getenv("BADSINK")}) }
