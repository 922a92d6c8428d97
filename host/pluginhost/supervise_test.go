package pluginhost

import (
	"testing"
	"time"
)

// Every kind waits the same way between restarts: RestartMin first,
// doubling to RestartMax, from the start again once the plugin ran; a
// wait ends early when its loop is stopped.
func TestRestartsBackOffAndStop(t *testing.T) {
	r := NewRestarts(0, 0)
	var got []time.Duration
	for i := 0; i < 12; i++ {
		got = append(got, r.Next())
	}
	if got[0] != RestartMin || got[1] != 2*RestartMin || got[len(got)-1] != RestartMax {
		t.Fatalf("delays %v", got)
	}
	r.Reset()
	if d := r.Next(); d != RestartMin {
		t.Fatalf("after a reset %s", d)
	}
	stop := make(chan struct{})
	close(stop)
	slow := NewRestarts(time.Hour, time.Hour)
	t0 := time.Now()
	if slow.Wait(stop) || time.Since(t0) > time.Second {
		t.Fatal("a stopped wait went on, or waited")
	}
	if !NewRestarts(time.Millisecond, time.Millisecond).Wait(make(chan struct{})) {
		t.Fatal("a wait nothing stopped did not go on")
	}
}
