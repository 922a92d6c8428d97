// Package parentwatch notices when the process that started this one exits,
// so a plugin can flush and leave instead of living on as an orphan.
// go-plugin has no such protection, and PR_SET_PDEATHSIG follows the parent's
// thread, not its process, which Go cannot pin (golang/go#27505).
package parentwatch

import (
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// PollInterval is how often the fallback checks getppid().
const PollInterval = 250 * time.Millisecond

// OnExit calls fn once, in its own goroutine, when the parent process exits.
// It waits on a pidfd where the kernel has them (5.3+) and polls getppid()
// otherwise.
func OnExit(fn func(), logger hclog.Logger) {
	ppid := os.Getppid()
	if ppid <= 1 {
		return // already orphaned or started by init: nothing to watch
	}
	go func() {
		waitPidfd(ppid)
		// Whatever the pidfd said, getppid is the authority: it changes
		// when the parent is gone and this process is re-parented.
		for os.Getppid() == ppid {
			time.Sleep(PollInterval)
		}
		logger.Warn("host process exited; flushing and exiting", "host_pid", ppid)
		fn()
	}()
}

// waitPidfd blocks until the process ppid exits, or returns at once when
// pidfds are not available.
func waitPidfd(ppid int) {
	fd, err := unix.PidfdOpen(ppid, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	if os.Getppid() != ppid {
		return // exited (and the pid perhaps reused) before the open
	}
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); err != unix.EINTR {
			return
		}
	}
}
