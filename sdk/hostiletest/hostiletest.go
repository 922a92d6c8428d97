// Package hostiletest is what a hostile plugin tries against the host that
// launched it, for tests of the host's isolation: a plugin built with it
// (a test build, never a shipped one) runs Run and logs each outcome, and
// the test asserts that every probe was refused.
//
// The probes assume the layout of the host's end-to-end tests: the plugin
// binary sits two directories below the test's directory (base), which
// holds the token file, the state dir and the trails.
package hostiletest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Result is one probe's outcome.
type Result struct {
	Probe   string `json:"probe"`
	Refused bool   `json:"refused"`
	Detail  string `json:"detail"`
}

// Base is the test's directory as the plugin finds it from its own path.
func Base() string { return filepath.Dir(filepath.Dir(os.Args[0])) }

// HostPID is the parent's pid as /proc shows it (in a PID namespace of its
// own, the namespace's first process, which the host started).
func HostPID() int {
	if b, err := os.ReadFile("/proc/self/stat"); err == nil {
		if i := strings.LastIndexByte(string(b), ')'); i >= 0 {
			if f := strings.Fields(string(b[i+1:])); len(f) > 1 {
				if n, err := strconv.Atoi(f[1]); err == nil && n > 0 {
					return n
				}
			}
		}
	}
	return os.Getppid()
}

// Files are the probes of what the host holds in files: its environ and
// memory under /proc, the state dir, the token file. A test runs them
// itself too, unconfined, to show that each reaches its target there.
func Files(base string, host int) []Result {
	var out []Result
	add := func(probe string, err error, detail string) { out = append(out, result(probe, err, detail)) }
	read := func(probe, path string) {
		b, err := os.ReadFile(path)
		add(probe, err, fmt.Sprintf("read %d bytes of %s", len(b), path))
	}
	read("host environ", fmt.Sprintf("/proc/%d/environ", host))
	f, err := os.Open(fmt.Sprintf("/proc/%d/mem", host))
	if err == nil {
		f.Close()
	}
	add("host memory", err, "opened the host's /proc/PID/mem")
	for _, name := range []string{"chain.state.a", "chain.state.b", "log.key"} {
		read("state "+name, filepath.Join(base, "state", name))
	}
	read("token file", filepath.Join(base, "token"))
	return out
}

// Run tries the probes that need nothing of the host but its process: the
// parent's environ and memory, the state dir, the token file, ptrace,
// signals, TCP, capabilities, a file outside its directories.
func Run(base string) []Result {
	host := HostPID()
	out := Files(base, host)
	add := func(probe string, err error, detail string) { out = append(out, result(probe, err, detail)) }
	err := unix.PtraceAttach(host)
	if err == nil {
		_ = unix.PtraceDetach(host)
	}
	add("ptrace the host", err, "attached")
	add("SIGHUP the host", unix.Kill(host, unix.SIGHUP), "delivered")
	own := map[int]bool{}
	if tasks, err := os.ReadDir("/proc/self/task"); err == nil {
		for _, t := range tasks {
			n, _ := strconv.Atoi(t.Name())
			own[n] = true // this process's threads
		}
	}
	reached := 0
	for pid := max(2, host-200); pid < host+400; pid++ {
		if !own[pid] && unix.Kill(pid, 0) == nil {
			reached++
		}
	}
	var sweep error
	if reached == 0 {
		sweep = fmt.Errorf("%w: no process outside the plugin's own could be signalled", errRefused)
	}
	add("signal any other process", sweep, fmt.Sprintf("%d processes took signal 0", reached))
	// The host's process table: a plugin whose parent is pid 1 and whose
	// /proc numbers it as getpid does lives in a PID namespace of its own
	// with that namespace's /proc, where no pid of the host's exists to be
	// opened or signalled (the test also compares /proc/self with the pid
	// the host knows the plugin by).
	self, err := os.Readlink("/proc/self")
	seen := fmt.Sprintf("/proc/self is %s, getpid %d, getppid %d", self, os.Getpid(), os.Getppid())
	var table error
	if err == nil && self == strconv.Itoa(os.Getpid()) && os.Getppid() == 1 {
		table = fmt.Errorf("%w: in a PID namespace of its own, with its /proc: %s", errRefused, seen)
	}
	add("the host's process table", table, seen)
	c, err := net.DialTimeout("tcp", "127.0.0.1:1", time.Second)
	if err == nil {
		c.Close()
	}
	switch {
	case err == nil:
		add("TCP", nil, "connected")
	case errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM):
		add("TCP", err, "")
	default:
		add("TCP", nil, "the connect was made and answered: "+err.Error())
	}
	add("io_uring", IOURing(), "set up a ring")
	caps := "unknown"
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
				caps = strings.TrimSpace(v)
			}
		}
	}
	var capErr error
	if caps == "0000000000000000" {
		capErr = fmt.Errorf("%w: no effective capability", errRefused)
	}
	add("capabilities", capErr, "CapEff "+caps)
	tmp := filepath.Join("/tmp", "vramward-hostile-"+strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(tmp, []byte("x"), 0o600); err == nil {
		os.Remove(tmp)
		add("write /tmp", nil, "wrote "+tmp)
	} else {
		add("write /tmp", err, "")
	}
	return out
}

// IOURing sets up an io_uring (and closes it): its operations would reach
// the kernel past any seccomp filter. A test runs it unconfined too.
func IOURing() error {
	var params [120]byte // struct io_uring_params
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0])), 0)
	if errno != 0 {
		return errno
	}
	unix.Close(int(fd))
	return nil
}

// result is a probe's outcome: refused only by a denial (EACCES, EPERM),
// not because its target is missing, which says nothing of the host.
func result(probe string, err error, detail string) Result {
	r := Result{Probe: probe, Detail: detail}
	if err != nil {
		// ESRCH: the target process is not even visible (another PID
		// namespace).
		r.Refused = errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.ESRCH) || errors.Is(err, errRefused)
		r.Detail = err.Error()
	}
	return r
}

// errRefused marks a probe refused in a way that is no errno.
var errRefused = errors.New("refused")

// Late are the probes of what exists only once the host has started:
// another sink's trail (opened for append once it exists) and the status
// socket; each is tried until it answers or wait passes.
func Late(base string, wait time.Duration) []Result {
	trail := filepath.Join(base, "trail", "audit.log")
	deadline := time.Now().Add(wait)
	var r Result
	for {
		f, err := os.OpenFile(trail, os.O_WRONLY|os.O_APPEND, 0)
		if err == nil {
			f.Close()
			r = result("another sink's trail", nil, "opened it for append")
			break
		}
		r = result("another sink's trail", err, "")
		if r.Refused || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return []Result{r, StatusSocket(base, time.Until(deadline))}
}

// StatusSocket asks the host's status socket (base/state/status.sock) for
// its status, until it answers or wait passes.
func StatusSocket(base string, wait time.Duration) Result {
	path := filepath.Join(base, "state", "status.sock")
	r := Result{Probe: "status socket", Refused: true}
	deadline := time.Now().Add(wait)
	for {
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			_, _ = c.Write([]byte("GET /v1/status HTTP/1.0\r\nHost: x\r\n\r\n"))
			buf := make([]byte, 64)
			n, _ := c.Read(buf)
			c.Close()
			if strings.HasPrefix(string(buf[:n]), "HTTP/1.") {
				r.Refused, r.Detail = false, "answered: "+strings.SplitN(string(buf[:n]), "\r\n", 2)[0]
				return r
			}
			r.Detail = "connected, and was dropped without an answer"
			r.Refused = true
			return r
		}
		r = result("status socket", err, "")
		if time.Now().After(deadline) {
			return r
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Log writes each result as a JSON log line on w (the plugin's stderr as
// it was before go-plugin's Serve took os.Stderr over), which the host
// forwards into its own log under the plugin's name.
func Log(w io.Writer, results []Result) {
	for _, r := range results {
		b, _ := json.Marshal(map[string]any{"@level": "warn", "@message": "hostile probe", "probe": r.Probe, "refused": r.Refused, "detail": r.Detail})
		fmt.Fprintln(w, string(b))
	}
}
