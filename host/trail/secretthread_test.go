package trail

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// sigBlk reads this thread's blocked-signal mask from the kernel.
func sigBlk(t *testing.T) uint64 {
	t.Helper()
	data, err := os.ReadFile("/proc/thread-self/status")
	if err != nil {
		t.Skipf("no /proc/thread-self here: %v", err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "SigBlk:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
	}
	t.Fatal("no SigBlk line")
	return 0
}

// While a secret is handled, no signal can interrupt the thread (a signal
// frame would save the registers holding it); afterwards the thread's mask
// is what it was.
func TestSecretOperationsBlockSignals(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before := sigBlk(t)
	var during uint64
	runMasked(func() { during = sigBlk(t) })
	if after := sigBlk(t); after != before {
		t.Fatalf("mask after the operation %#x, before %#x", after, before)
	}
	for _, sig := range []syscall.Signal{syscall.SIGURG, syscall.SIGPROF, syscall.SIGCHLD, syscall.SIGTERM, syscall.SIGINT, syscall.SIGSEGV, syscall.SIGUSR1} {
		if during&(1<<(uint(sig)-1)) == 0 {
			t.Errorf("%v is not blocked during a secret operation (mask %#x)", sig, during)
		}
	}
}
