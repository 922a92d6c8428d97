package daemon

import (
	"testing"
	"time"

	"github.com/vramward/vramward/host/status"
)

// TestDegradedSinceIsWhenItBegan: the host's state says degraded since
// its cause began, not since someone first looked; a reason added while
// degraded keeps the earlier since.
func TestDegradedSinceIsWhenItBegan(t *testing.T) {
	var h hostState
	h.set(status.Serving, "")
	began := time.Now().Add(-time.Hour).UTC()
	h.setSince(status.Degraded, "audit sinks failing: a", began)
	if _, _, since := h.get(); !since.Equal(began) {
		t.Fatalf("degraded since %s, the failure began %s", since, began)
	}
	h.setSince(status.Degraded, "audit sinks failing: a; audit sinks not up: b", time.Now())
	if _, _, since := h.get(); !since.Equal(began) {
		t.Fatalf("a second cause moved since to %s", since)
	}
	h.set(status.Serving, "")
	h.setSince(status.Degraded, "x", time.Time{})
	if _, _, since := h.get(); time.Since(since) > time.Minute {
		t.Fatalf("a new degradation with no known start kept the old since %s", since)
	}
}
