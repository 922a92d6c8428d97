package audittest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/schema"
)

// spy records the order of the SDK's calls into an in-process sink, and can
// make Flush fail, so the harness can see what happened before an ack.
// It deliberately hides PeriodicFlusher: a timer's flush would blur the
// order the harness checks.
type spy struct {
	audit.Sink
	mu    sync.Mutex
	calls []string
	fail  bool
}

var errSpyFlush = errors.New("audittest: flush failure injected by the harness")

func (s *spy) record(c string) {
	s.mu.Lock()
	s.calls = append(s.calls, c)
	s.mu.Unlock()
}

func (s *spy) Configure(ctx context.Context, cfg schema.Values) error {
	s.record("configure")
	return s.Sink.Configure(ctx, cfg)
}

func (s *spy) Write(ctx context.Context, records []audit.Record) error {
	for _, r := range records {
		s.record(fmt.Sprintf("write %d", r.Seq))
	}
	return s.Sink.Write(ctx, records)
}

func (s *spy) Flush(ctx context.Context) error {
	s.record("flush")
	s.mu.Lock()
	fail := s.fail
	s.mu.Unlock()
	if fail {
		return errSpyFlush
	}
	return s.Sink.Flush(ctx)
}

func (s *spy) Close(ctx context.Context) error {
	s.record("close")
	return s.Sink.Close(ctx)
}

func (s *spy) Reopen(ctx context.Context) error {
	s.record("reopen")
	if r, ok := s.Sink.(audit.Reopener); ok {
		return r.Reopen(ctx)
	}
	return nil
}

func (s *spy) reset() {
	s.mu.Lock()
	s.calls = nil
	s.mu.Unlock()
}

func (s *spy) log() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.calls...)
}

func (s *spy) failFlush(on bool) {
	s.mu.Lock()
	s.fail = on
	s.mu.Unlock()
}

// FlushInterval and Shortened pass the sink's optional interfaces through,
// so that Serve treats the spied sink as it treats the sink itself.
func (s *spy) FlushInterval() time.Duration {
	if pf, ok := s.Sink.(audit.PeriodicFlusher); ok {
		return pf.FlushInterval()
	}
	return 0
}

func (s *spy) Shortened() uint64 {
	if sh, ok := s.Sink.(audit.Shortener); ok {
		return sh.Shortened()
	}
	return 0
}
