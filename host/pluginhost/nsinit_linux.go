package pluginhost

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A host running as root gives each plugin a PID and a mount namespace of
// its own. The host's binary, executed with initArg, is their first
// process: it mounts a /proc of the new PID namespace (the plugin sees no
// process of the host's, nor of its siblings, not even by pid), starts the
// launcher (launcher_linux.go) as its only child, and stays, because the
// first process of a PID namespace is what ties the plugin's life to the
// host's:
//   - the plugin's parent is this process, whose pid (1) never changes, so
//     the plugin cannot tell the host's death from getppid();
//   - this process holds fd hostFD, the read end of a pipe whose write end
//     only the host holds: it reads EOF the moment the host is gone (a
//     kill -9 included), asks the plugin to stop (SIGTERM: the SDK flushes
//     and closes its sinks), and exits after initGrace at the latest, and
//     when the first process of a PID namespace exits the kernel kills
//     every process left in it. Nothing of a plugin outlives its host.
//   - it reaps the processes the plugin's own children leave behind.
const (
	initArg   = "__vramward-plugin-init"
	hostFD    = 5
	initGrace = 2 * time.Second
)

// forwarded are the signals an operator may send the process the host
// started, which reach the plugin.
var forwarded = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT}

func init() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case initArg:
			os.Exit(nsInit())
		case userNSArg:
			os.Exit(userNSParent())
		case userNSProbeArg:
			os.Exit(userNSProbe())
		case probeChildArg:
			os.Exit(probeMounts())
		}
	}
}

// A host without root cannot make namespaces at the plugin's fork: they
// would need a user namespace, whose id maps the parent writes into
// /proc/CHILD, and the child of a non-dumpable host is not the host's to
// write to. So the host starts its binary with userNSArg, dumpable and of
// the host's uid, which makes them for its own child: a user namespace that
// maps the host's uid and gid to themselves (the plugin is the host's user
// inside and out, with no more rights than outside), and in it the PID,
// mount, IPC and UTS namespaces whose first process is nsInit, given
// CAP_SYS_ADMIN in that namespace alone to mount its /proc (the launcher
// drops it). This process stays the one the host started: it forwards an
// operator's signals and exits with its child's code.
const (
	userNSArg      = "__vramward-plugin-userns"
	userNSProbeArg = "__vramward-plugin-userns-probe"
	probeChildArg  = "__vramward-plugin-namespaces-probe"
)

// userNSAttr makes the namespaces for a process of this uid and gid.
func userNSAttr() *syscall.SysProcAttr {
	uid, gid := os.Getuid(), os.Getgid()
	return &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | namespaceFlags,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: uid, HostID: uid, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: gid, HostID: gid, Size: 1}},
		AmbientCaps: []uintptr{unix.CAP_SYS_ADMIN},
	}
}

func userNSParent() int {
	rec := os.NewFile(recordFD, "record")
	for _, fd := range []int{binaryFD, recordFD, hostFD} {
		unix.CloseOnExec(fd)
	}
	files := passLane([]*os.File{os.NewFile(binaryFD, "plugin"), rec, os.NewFile(hostFD, "host")})
	cmd := &exec.Cmd{
		Path:        "/proc/self/exe",
		Args:        append([]string{"vramward-plugin-init", initArg}, os.Args[2:]...),
		Env:         os.Environ(),
		Stdout:      os.Stdout,
		Stderr:      os.Stderr,
		ExtraFiles:  files,
		SysProcAttr: userNSAttr(),
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, forwarded...)
	if err := cmd.Start(); err != nil {
		_ = json.NewEncoder(rec).Encode(Enforced{Error: "the plugin's namespaces: " + err.Error()})
		return 70
	}
	for _, f := range files {
		f.Close()
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for {
		select {
		case s := <-sigs:
			_ = cmd.Process.Signal(s)
		case <-exited:
			ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if ws.Signaled() {
				return 128 + int(ws.Signal())
			}
			return cmd.ProcessState.ExitCode()
		}
	}
}

// namespacesWork says, once per host, whether it can give its plugins
// their namespaces (a kernel, a container or a unit may forbid them, or
// forbid the mount of a /proc): a child started in them the same way
// mounts what nsInit mounts, then exits. Without them the plugins share
// the host's.
var namespacesWork = sync.OnceValue(func() error {
	var c *exec.Cmd
	if os.Geteuid() == 0 {
		c = &exec.Cmd{Path: "/proc/self/exe", Args: []string{"vramward-plugin-probe", probeChildArg}, SysProcAttr: &syscall.SysProcAttr{Cloneflags: namespaceFlags}}
	} else {
		c = exec.Command("/proc/self/exe", userNSProbeArg)
	}
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
})

// userNSProbe is the parent step of namespacesWork without root.
func userNSProbe() int {
	c := &exec.Cmd{Path: "/proc/self/exe", Args: []string{"vramward-plugin-probe", probeChildArg}, SysProcAttr: userNSAttr()}
	if out, err := c.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "%v %s", err, out)
		return 1
	}
	return 0
}

// probeMounts makes nsInit's mounts in a mount namespace of its own.
func probeMounts() int {
	if err := privateProc(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// privateProc makes this mount namespace's mounts its own, then mounts a
// /proc that shows only this PID namespace's processes.
func privateProc() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make the mounts private: %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	return nil
}

// nsInit runs as the first process of the plugin's namespaces and returns
// the plugin's exit code (128 + the signal that killed it, as a shell
// says).
func nsInit() int {
	rec := os.NewFile(recordFD, "record")
	fail := func(err error) int {
		_ = json.NewEncoder(rec).Encode(Enforced{Error: "the plugin's namespaces: " + err.Error()})
		fmt.Fprintf(os.Stderr, "vramward plugin init: %v\n", err)
		return 70
	}
	// Nothing of the host's is in this process, but the plugin (root
	// without capabilities) must not open its memory either.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fail(fmt.Errorf("prctl(PR_SET_DUMPABLE): %w", err))
	}
	if os.Getpid() != 1 {
		return fail(errors.New("not the first process of a PID namespace"))
	}
	if err := privateProc(); err != nil {
		return fail(err)
	}
	for _, fd := range []int{binaryFD, recordFD, hostFD} {
		unix.CloseOnExec(fd) // the launcher gets its own copies, the plugin none of hostFD
	}
	files := passLane([]*os.File{os.NewFile(binaryFD, "plugin"), rec})
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       append([]string{"vramward-plugin-launcher", launcherArg}, os.Args[2:]...),
		Env:        os.Environ(),
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		ExtraFiles: files,
	}
	// Signals an operator sends to the process the host started reach the
	// plugin.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, forwarded...)
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("start the launcher: %w", err))
	}
	// The launcher writes the record; the host reads it to the end.
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
	exited := make(chan int, 1)
	go func() {
		code := reapUntil(cmd.Process.Pid)
		// The host removes the plugin's cgroups once it ends, unless the
		// host is gone: then this process, which is in none of them, does.
		var p Policy
		if json.Unmarshal([]byte(os.Getenv(policyEnv)), &p) == nil {
			for _, procs := range p.CgroupProcs {
				_ = os.Remove(filepath.Dir(procs))
			}
		}
		exited <- code
	}()
	hostGone := make(chan struct{})
	go func() {
		host := os.NewFile(hostFD, "host")
		var b [1]byte
		for {
			if _, err := host.Read(b[:]); err != nil {
				close(hostGone)
				return
			}
		}
	}()
	var grace <-chan time.Time
	for {
		select {
		case code := <-exited:
			return code
		case s := <-sigs:
			_ = cmd.Process.Signal(s)
		case <-hostGone:
			hostGone = nil
			_ = cmd.Process.Signal(syscall.SIGTERM)
			grace = time.After(initGrace)
		case <-grace:
			return 128 + int(syscall.SIGKILL)
		}
	}
}

// reapUntil reaps every child of this process (the orphans of the plugin's
// own children are reparented here) until pid exits, and returns its exit
// code.
func reapUntil(pid int) int {
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, 0, nil)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 70 // no child left: cannot be, the launcher is one
		case got != pid:
			continue
		case ws.Signaled():
			return 128 + int(ws.Signal())
		default:
			return ws.ExitStatus()
		}
	}
}
