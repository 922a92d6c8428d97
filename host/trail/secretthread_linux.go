package trail

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// runMasked runs op on this thread with every signal blocked, and zeroes
// the registers before letting them in again and leaving the thread.
func runMasked(op func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var all, old unix.Sigset_t
	for i := range all.Val {
		all.Val[i] = ^uint64(0)
	}
	// rt_sigprocmask on this thread only fails for a bad argument: with
	// signals not blocked the operation still runs, and the registers are
	// still zeroed after it.
	masked := unix.PthreadSigmask(unix.SIG_SETMASK, &all, &old) == nil
	op()
	clearRegisters()
	if masked {
		_ = unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil)
	}
}
