package pluginhost

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
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

func init() {
	if len(os.Args) > 1 && os.Args[1] == initArg {
		os.Exit(nsInit())
	}
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
	// The mounts below stay in this namespace; then a /proc that shows
	// only this namespace's processes.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fail(fmt.Errorf("make the mounts private: %w", err))
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fail(fmt.Errorf("mount /proc: %w", err))
	}
	for _, fd := range []int{binaryFD, recordFD, hostFD} {
		unix.CloseOnExec(fd) // the launcher gets its own copies, the plugin none of hostFD
	}
	bin := os.NewFile(binaryFD, "plugin")
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       append([]string{"vramward-plugin-launcher", launcherArg}, os.Args[2:]...),
		Env:        os.Environ(),
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		ExtraFiles: []*os.File{bin, rec},
	}
	// Signals an operator sends to the process the host started reach the
	// plugin.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT)
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("start the launcher: %w", err))
	}
	// The launcher writes the record; the host reads it to the end.
	bin.Close()
	rec.Close()
	exited := make(chan int, 1)
	go func() { exited <- reapUntil(cmd.Process.Pid) }()
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
