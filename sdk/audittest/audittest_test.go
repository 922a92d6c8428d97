package audittest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audittest"
	"github.com/vramward/vramward/sdk/plugintest"
	"github.com/vramward/vramward/sdk/schema"
)

// memSink keeps events in this process's memory, per config name, which
// stands in for storage when the harness runs it in the same process: a
// fresh instance with the same name finds what the last one stored. It
// skips re-sends the way a sink must (audit.ResendWindow).
type memSink struct {
	st   *store
	seen *audit.ResendWindow
}

type store struct {
	mu     sync.Mutex
	events []audit.Event
}

var (
	stores sync.Map // config name -> *store
	next   atomic.Int64
)

func (m *memSink) Info() audit.SinkInfo {
	return audit.SinkInfo{Name: "memory", Version: "test", Schema: schema.Schema{{Name: "name", Type: schema.String, Required: true}}}
}

func (m *memSink) Configure(_ context.Context, cfg schema.Values) error {
	v, _ := stores.LoadOrStore(cfg.String("name"), &store{})
	m.st, m.seen = v.(*store), audit.NewResendWindow(4096)
	m.st.mu.Lock()
	defer m.st.mu.Unlock()
	for _, e := range m.st.events {
		m.seen.Add(e.Seq, e.Chain.Hash)
	}
	return nil
}

func (m *memSink) Write(_ context.Context, records []audit.Record) error {
	events := make([]audit.Event, len(records))
	for i := range records {
		events[i] = records[i].Event
	}
	m.st.mu.Lock()
	defer m.st.mu.Unlock()
	for _, e := range events {
		if !m.seen.Has(e.Seq, e.Chain.Hash) {
			m.st.events = append(m.st.events, e)
			m.seen.Add(e.Seq, e.Chain.Hash)
		}
	}
	return nil
}

func (m *memSink) Flush(context.Context) error { return nil }
func (m *memSink) Close(context.Context) error { return nil }

func readBack(t *testing.T, config []byte) []audit.Event {
	var cfg struct{ Name string }
	if err := json.Unmarshal(config, &cfg); err != nil {
		t.Fatal(err)
	}
	v, ok := stores.Load(cfg.Name)
	if !ok {
		return nil
	}
	st := v.(*store)
	st.mu.Lock()
	defer st.mu.Unlock()
	return append([]audit.Event(nil), st.events...)
}

func TestHarnessOnMemorySink(t *testing.T) {
	audittest.Run(t, func(t *testing.T) (audit.Sink, []byte) {
		return &memSink{}, []byte(fmt.Sprintf(`{"name":"m%d"}`, next.Add(1)))
	}, audittest.WithReadBack(readBack))
}

var badSinkBin string

func TestMain(m *testing.M) {
	plugintest.Main(m, func(dir string) (err error) {
		badSinkBin, err = plugintest.Build(dir, "./testdata/badsink", "badsink")
		return err
	})
}

// TestBadSinkUnderHarness is run by TestHarnessCatchesBadSinks in a child
// process, with BADSINK naming the fault.
func TestBadSinkUnderHarness(t *testing.T) {
	if os.Getenv("BADSINK") == "" {
		t.Skip("run by TestHarnessCatchesBadSinks")
	}
	audittest.RunBinary(t, badSinkBin, func(t *testing.T) []byte {
		return []byte(fmt.Sprintf(`{"path": %q}`, filepath.Join(t.TempDir(), "a.log")))
	}, audittest.WithReadBack(audittest.JSONLinesFile("path")))
}

// TestHarnessCatchesBadSinks: the harness fails a sink that acknowledges
// before it commits, one that drops events, one whose Flush does nothing
// while it holds events in memory and one that writes re-sent events again,
// each with a message that says what is wrong; it passes the same sink
// without the fault.
func TestHarnessCatchesBadSinks(t *testing.T) {
	for fault, want := range map[string]string{
		"good":              "",
		"ack-before-commit": "acknowledged events lost after kill -9",
		"drop-100th":        "persisted 149 events, sent 150",
		"noop-flush":        "acknowledged",
		"rewrite-resends":   "a re-sent event (same seq, same chain hash) must be skipped",
	} {
		t.Run(fault, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run", "^TestBadSinkUnderHarness$", "-test.count=1")
			cmd.Env = append(os.Environ(), "BADSINK="+fault)
			out, err := cmd.CombinedOutput()
			if want == "" {
				if err != nil {
					t.Fatalf("the harness failed the good sink: %v\n%s", err, out)
				}
				return
			}
			if err == nil {
				t.Fatalf("the harness passed a sink with fault %s:\n%s", fault, out)
			}
			if !strings.Contains(string(out), want) {
				t.Fatalf("fault %s: the harness failed without saying %q:\n%s", fault, want, out)
			}
		})
	}
}
