package lane

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Both ends of the lane wait for a frame with their thread asleep in the
// kernel, on the socket itself, rather than parked in the runtime's
// network poller. A CRITICAL emit waits twice while every thread of both
// processes is idle: the plugin for the request, the host for the answer
// after the fsync. The kernel wakes a thread asleep on the socket itself;
// the poller's wake goes through epoll and the scheduler handing a P over
// on each side. bench/lanewake measures it between two idle processes: on
// the 2-vCPU VM of bench/RESULTS.md a round trip took 63-84 µs at p50
// through the poller on both ends, 23-32 µs with both asleep. Most of that
// is the waiting end of each trip (the plugin's): asleep there alone gave
// 21-33 µs. Through the whole host the host's end counts too: with it in
// the poller, CRITICAL emits took 2.25x a raw write+fsync at the median of
// seven interleaved pairs, against 2.13x asleep.

// PluginEnd takes over the plugin's end of the lane, the inherited
// descriptor fd: close-on-exec, so that no process the plugin starts
// inherits it, and in blocking mode, so that the goroutine serving it
// sleeps in read(2). Nothing but the host closing its end (EOF) ends such
// a read, which is how a lane ends.
func PluginEnd(fd int) (*os.File, error) {
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, false); err != nil {
		return nil, fmt.Errorf("record lane: descriptor %d: %w", fd, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("record lane: descriptor %d: %w", fd, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil, fmt.Errorf("record lane: descriptor %d is not a socket", fd)
	}
	return os.NewFile(uintptr(fd), "record lane"), nil
}

// cancelCheckEvery bounds one sleep of a waiting Answers, so that a
// cancelled context ends the wait this long after at most; a deadline
// ends it on time.
const cancelCheckEvery = 10 * time.Millisecond

// Answers reads the host's end of the lane with the reading thread asleep
// in ppoll(2) until the socket is readable, the deadline of the context
// given to Wait passes, or that context ends. Writes stay on the conn.
type Answers struct {
	rc  syscall.RawConn
	ctx context.Context
}

// NewAnswers reads conn's answers; an error for a conn that is not a
// socket of this process (the caller then reads conn itself).
func NewAnswers(conn net.Conn) (*Answers, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("record lane: %T has no descriptor", conn)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("record lane: %w", err)
	}
	return &Answers{rc: rc, ctx: context.Background()}, nil
}

// Wait makes the reads that follow end with ctx: with
// os.ErrDeadlineExceeded at its deadline, with its error once it ends.
func (a *Answers) Wait(ctx context.Context) { a.ctx = ctx }

func (a *Answers) Read(p []byte) (n int, err error) {
	if len(p) == 0 {
		return 0, nil
	}
	if rerr := a.rc.Read(func(fd uintptr) bool {
		n, err = a.read(int(fd), p)
		return true
	}); rerr != nil {
		return 0, rerr
	}
	return n, err
}

func (a *Answers) read(fd int, p []byte) (int, error) {
	deadline, hasDeadline := a.ctx.Deadline()
	for {
		n, err := unix.Read(fd, p)
		switch {
		case err == nil && n == 0:
			return 0, io.EOF
		case err == nil:
			return n, nil
		case err == unix.EINTR:
			continue
		case err != unix.EAGAIN:
			return 0, os.NewSyscallError("read", err)
		}
		if err := a.ctx.Err(); err != nil {
			return 0, err
		}
		sleep := cancelCheckEvery
		if hasDeadline {
			left := time.Until(deadline)
			if left <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			sleep = min(sleep, left)
		}
		ts := unix.NsecToTimespec(sleep.Nanoseconds())
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Ppoll(fds, &ts, nil); err != nil && err != unix.EINTR {
			return 0, os.NewSyscallError("ppoll", err)
		}
	}
}
