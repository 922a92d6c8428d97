package audittest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audittest"
	"github.com/vramward/vramward/sdk/schema"
)

// memSink is the smallest correct sink: the harness must pass it, which
// checks the harness as much as the SDK.
type memSink struct {
	mu     sync.Mutex
	events []audit.Event
	closed bool
}

var (
	sinks sync.Map // config name -> *memSink
	next  atomic.Int64
)

func (m *memSink) Info() audit.SinkInfo {
	return audit.SinkInfo{Name: "memory", Version: "test", Schema: schema.Schema{{Name: "name", Type: schema.String, Required: true}}}
}

func (m *memSink) Configure(_ context.Context, cfg schema.Values) error {
	sinks.Store(cfg.String("name"), m)
	return nil
}

func (m *memSink) Write(_ context.Context, events []audit.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("closed")
	}
	m.events = append(m.events, events...)
	return nil
}

func (m *memSink) Flush(context.Context) error { return nil }

func (m *memSink) Close(context.Context) error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	return nil
}

func readBack(t *testing.T, config []byte) []audit.Event {
	var cfg struct{ Name string }
	if err := json.Unmarshal(config, &cfg); err != nil {
		t.Fatal(err)
	}
	v, ok := sinks.Load(cfg.Name)
	if !ok {
		return nil
	}
	m := v.(*memSink)
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]audit.Event(nil), m.events...)
}

func TestHarnessOnMemorySink(t *testing.T) {
	audittest.Run(t, func(t *testing.T) (audit.Sink, []byte) {
		return &memSink{}, []byte(fmt.Sprintf(`{"name":"m%d"}`, next.Add(1)))
	}, audittest.WithReadBack(readBack))
}
