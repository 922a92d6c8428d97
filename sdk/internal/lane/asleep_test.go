package lane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pair is a lane's two ends as a launch makes them, the plugin's taken
// over as a plugin process takes it.
func pair(t *testing.T) (*Answers, io.Writer, *os.File) {
	t.Helper()
	host, child, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Dup(int(child.Fd()))
	child.Close()
	if err != nil {
		t.Fatal(err)
	}
	plugin, err := PluginEnd(fd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Close(); plugin.Close() })
	a, err := NewAnswers(host)
	if err != nil {
		t.Fatal(err)
	}
	return a, host, plugin
}

// inSyscall waits for a thread of this process to sit in syscall nr with
// first argument arg0 (any when negative), as /proc shows it: the wait is
// a sleep in the kernel, not a goroutine parked in the runtime's poller
// (which sleeps in epoll_pwait).
func inSyscall(t *testing.T, nr uintptr, arg0 int) {
	t.Helper()
	want := strconv.FormatUint(uint64(nr), 10) + " "
	if arg0 >= 0 {
		want += fmt.Sprintf("0x%x ", arg0)
	}
	for range 200 {
		tasks, _ := filepath.Glob("/proc/self/task/*/syscall")
		for _, p := range tasks {
			if b, err := os.ReadFile(p); err == nil && strings.HasPrefix(string(b), want) {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no thread of this process sleeps in syscall %d (%q)", nr, want)
}

// fdOf is f's descriptor, taken without File.Fd (which may change the
// mode under test).
func fdOf(t *testing.T, f *os.File) (fd int) {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Control(func(d uintptr) { fd = int(d) }); err != nil {
		t.Fatal(err)
	}
	return fd
}

func TestTheHostWaitsForAnAnswerAsleepInTheKernel(t *testing.T) {
	a, _, plugin := pair(t)
	got := make(chan string, 1)
	go func() {
		b := make([]byte, 5)
		_, err := io.ReadFull(a, b)
		got <- fmt.Sprint(string(b), err)
	}()
	inSyscall(t, unix.SYS_PPOLL, -1)
	if _, err := plugin.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if g := <-got; g != "hello<nil>" {
		t.Fatalf("read %q", g)
	}
}

func TestThePluginWaitsForARequestAsleepInTheKernel(t *testing.T) {
	_, host, plugin := pair(t)
	got := make(chan string, 1)
	go func() {
		b := make([]byte, 5)
		_, err := io.ReadFull(plugin, b)
		got <- fmt.Sprint(string(b), err)
	}()
	inSyscall(t, unix.SYS_READ, fdOf(t, plugin))
	if _, err := host.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if g := <-got; g != "hello<nil>" {
		t.Fatalf("read %q", g)
	}
}

// A wait ends at the context's deadline, or soon after the context is
// cancelled, with no answer; the peer closing its end is EOF.
func TestAnAnswerWaitEnds(t *testing.T) {
	t.Run("deadline", func(t *testing.T) {
		a, _, _ := pair(t)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		a.Wait(ctx)
		t0 := time.Now()
		n, err := a.Read(make([]byte, 10))
		if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("read %d bytes, %v; want the deadline", n, err)
		}
		if d := time.Since(t0); d < 40*time.Millisecond || d > 5*time.Second {
			t.Fatalf("the wait ended after %s, with a deadline of 50ms", d)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		a, _, _ := pair(t)
		ctx, cancel := context.WithCancel(context.Background())
		a.Wait(ctx)
		time.AfterFunc(20*time.Millisecond, cancel)
		if n, err := a.Read(make([]byte, 10)); n != 0 || !errors.Is(err, context.Canceled) {
			t.Fatalf("read %d bytes, %v; want context.Canceled", n, err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		a, _, plugin := pair(t)
		go func() {
			time.Sleep(20 * time.Millisecond)
			plugin.Close()
		}()
		if n, err := a.Read(make([]byte, 10)); n != 0 || err != io.EOF {
			t.Fatalf("read %d bytes, %v; want EOF", n, err)
		}
	})
}

// The plugin's end is blocking and close-on-exec (no process the plugin
// starts inherits it); a descriptor that is no socket is refused.
func TestThePluginEnd(t *testing.T) {
	_, _, plugin := pair(t)
	fd := fdOf(t, plugin)
	if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK != 0 {
		t.Fatalf("flags %#x, %v: want blocking", fl, err)
	}
	if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || fl&unix.FD_CLOEXEC == 0 {
		t.Fatalf("descriptor flags %#x, %v: want close-on-exec", fl, err)
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[1])
	if f, err := PluginEnd(p[0]); err == nil {
		f.Close()
		t.Fatal("a pipe was taken for the lane")
	} else if !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("got %v", err)
	}
	unix.Close(p[0])
}
