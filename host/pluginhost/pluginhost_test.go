package pluginhost

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vramward/vramward/sdk/audit"
)

func TestBackoffIsCappedAndResets(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	var got []time.Duration
	for i := 0; i < 6; i++ {
		got = append(got, b.Next())
	}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("delays %v", got)
		}
	}
	b.Reset()
	if d := b.Next(); d != 100*time.Millisecond {
		t.Fatalf("after Reset: %v", d)
	}
}

// TestPinnedChecksumRefusesTheBinary: a binary that differs from its pinned
// sha256 is never executed; the error names both digests.
func TestPinnedChecksumRefusesTheBinary(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	bin := filepath.Join(dir, "plugin.sh")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\ntouch "+marker+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	sm, _ := audit.NewMetrics(reg)
	l := &Launcher{Logger: hclog.NewNullLogger(), Metrics: m}
	spec := Spec{Name: "p", Kind: "audit_sink", Path: bin, SHA256: strings.Repeat("ab", 32), StartTimeout: time.Second}
	_, err = l.Launch(spec, audit.PluginForHost(audit.ClientOptions{Sink: "p", Metrics: sm}))
	var ce *ChecksumError
	if !errors.As(err, &ce) || ce.Expected != spec.SHA256 || len(ce.Actual) != 64 {
		t.Fatalf("want a ChecksumError with both digests, got %v", err)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("the refused binary ran")
	}
}
