package pluginhost

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin/runner"
)

// pipeGrace is how long the plugin's stdout and stderr stay open after its
// process ended, so its last log lines are read. After that the host closes
// its ends: a child that escaped the process group cannot hold them open,
// and go-plugin, which waits for both pipes before it reaps the plugin,
// cannot hang on them.
const pipeGrace = 500 * time.Millisecond

// binaryFD is the descriptor number the plugin binary has in the child
// between fork and exec (cmd.ExtraFiles[0]); the child executes
// /proc/self/fd/3, so what was hashed is what runs.
const binaryFD = 3

// groupRunner is go-plugin's runner for one plugin process. It differs from
// go-plugin's own in three ways that keep a misbehaving plugin from hanging
// or outliving the host:
//   - the plugin runs in a process group of its own: a terminal's or a
//     group's signal reaches only the host, and the host kills the whole
//     group on a timeout, at Kill and once the plugin's own process ended;
//   - the host owns the pipes and closes them pipeGrace after the plugin
//     ended, whatever its children do;
//   - the binary is opened once, hashed through that descriptor when it is
//     pinned, and executed through the same descriptor.
type groupRunner struct {
	log    hclog.Logger
	cmd    *exec.Cmd
	bin    *os.File
	name   string
	stdout *os.File
	stderr *os.File

	pid     int // the process the host started: the group's leader
	plugin  int // the plugin's own process (pid but under namespaces)
	mode    launchMode
	hostEnd *os.File // see Start
	// laneChild and laneHost are the plugin's lane, when its kind has one
	// (lane.go).
	laneChild *os.File
	laneHost  net.Conn
	exited    chan struct{}
	waitErr   error
	closeMu   sync.Once
	record    *os.File // the launcher's record of what it applied
	enforced  Enforced
	tmp       string // the plugin's own temporary directory
	cgroup    *cgroup
	noCgroup  string // why there is no cgroup
}

var _ runner.Runner = (*groupRunner)(nil)

// openBinary opens spec's binary, hashes it through the open descriptor
// (the status view shows what runs, pinned or not) and checks its pin. On
// a mismatch it returns a *ChecksumError and the binary is never executed.
func openBinary(spec Spec) (*os.File, string, error) {
	f, err := os.OpenFile(spec.Path, os.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, "", fmt.Errorf("plugin %s: open binary: %w", spec.Name, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, "", fmt.Errorf("plugin %s: stat binary: %w", spec.Name, err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, "", fmt.Errorf("plugin %s: %s is not a regular file (%s)", spec.Name, spec.Path, st.Mode().Type())
	}
	if st.Mode().Perm()&0o111 == 0 {
		f.Close()
		return nil, "", fmt.Errorf("plugin %s: %s is not executable (mode %04o)", spec.Name, spec.Path, st.Mode().Perm())
	}
	if err := checkOwnership(spec.Path, st); err != nil {
		f.Close()
		return nil, "", fmt.Errorf("plugin %s: %w", spec.Name, err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		f.Close()
		return nil, "", fmt.Errorf("plugin %s: hash binary: %w", spec.Name, err)
	}
	got := h.Sum(nil)
	if spec.SHA256 == "" {
		return f, hex.EncodeToString(got), nil
	}
	want, err := hex.DecodeString(spec.SHA256)
	if err != nil || len(want) != sha256.Size {
		f.Close()
		return nil, "", fmt.Errorf("plugin %s: sha256 %q is not 64 hex digits", spec.Name, spec.SHA256)
	}
	if subtle.ConstantTimeCompare(got, want) != 1 {
		f.Close()
		return nil, "", &ChecksumError{Plugin: spec.Name, Path: spec.Path, Expected: spec.SHA256, Actual: hex.EncodeToString(got)}
	}
	return f, hex.EncodeToString(got), nil
}

// CheckBinary makes the checks Launch makes before it executes spec's
// binary (a regular, executable file matching its pin), executing nothing.
func CheckBinary(spec Spec) error {
	f, _, err := openBinary(spec)
	if err != nil {
		return err
	}
	return f.Close()
}

// checkOwnership refuses a plugin binary, or a directory holding it, that
// someone other than root or the host's own user could change: such a
// binary could be replaced under a pin (the next start refuses it, but an
// unpinned one would run whatever was put there).
func checkOwnership(path string, st os.FileInfo) error {
	bad := func(what string, fi os.FileInfo) error {
		if fi.Mode().Perm()&0o022 != 0 && fi.Mode()&os.ModeSticky == 0 {
			return fmt.Errorf("%s is writable by group or others (mode %04o); run chmod go-w on it", what, fi.Mode().Perm())
		}
		if sys, ok := fi.Sys().(*syscall.Stat_t); ok && sys.Uid != 0 && int(sys.Uid) != os.Geteuid() {
			return fmt.Errorf("%s is owned by uid %d, neither root nor this host's user", what, sys.Uid)
		}
		return nil
	}
	if err := bad(path, st); err != nil {
		return err
	}
	dir := filepath.Dir(path)
	dst, err := os.Stat(dir)
	if err != nil {
		return err
	}
	return bad("its directory "+dir, dst)
}

// newGroupRunner takes go-plugin's command (its environment) and runs bin
// through the launcher (this binary, see launcher_linux.go), which applies
// spec.Policy before it executes bin. laneEnv, when set, names the lane
// the plugin gets (lane.go).
func newGroupRunner(log hclog.Logger, spec Spec, bin *os.File, pcmd *exec.Cmd, laneEnv string) (*groupRunner, error) {
	tmp, err := os.MkdirTemp("", "vramward-plugin-")
	if err != nil {
		return nil, fmt.Errorf("plugin %s: its temporary directory: %w", spec.Name, err)
	}
	policy := spec.Policy
	policy.User = spec.User
	if u := spec.User; u != nil {
		if err := os.Chown(tmp, u.UID, u.GID); err != nil {
			os.Remove(tmp)
			return nil, fmt.Errorf("plugin %s: its temporary directory: %w", spec.Name, err)
		}
	}
	cg, err := newCgroup(spec.Name, spec.Limits)
	noCgroup := ""
	if err != nil {
		if spec.Limits.Required {
			os.Remove(tmp)
			return nil, fmt.Errorf("plugin %s: its cgroup limits: %w", spec.Name, err)
		}
		noCgroup = err.Error()
		warnNoCgroup.Do(func() {
			log.Warn("plugins run without cgroup limits: this host cannot make cgroups (status says why, per plugin)", "error", err)
		})
	}
	if cg != nil {
		policy.CgroupProcs = cg.procs
	}
	policy.Lane = laneEnv != ""
	policy.WriteDirs = append(append([]string(nil), policy.WriteDirs...), tmp)
	// The binary itself, executed (and, for a script, read) through fd 3.
	policy.ReadFiles = append(append([]string(nil), policy.ReadFiles...), spec.Path)
	// go-plugin's client made a directory of this plugin's own for the
	// socket the plugin serves on.
	for _, kv := range pcmd.Env {
		if d, ok := strings.CutPrefix(kv, "PLUGIN_UNIX_SOCKET_DIR="); ok && d != "" {
			policy.WriteDirs = append(policy.WriteDirs, d)
		}
	}
	pj, err := json.Marshal(policy)
	if err != nil {
		cg.remove()
		os.Remove(tmp)
		return nil, err
	}
	env := append(append([]string(nil), pcmd.Env...), "TMPDIR="+tmp, policyEnv+"="+string(pj))
	r := &groupRunner{log: log, bin: bin, name: spec.Path, exited: make(chan struct{}), tmp: tmp, cgroup: cg, noCgroup: noCgroup}
	r.cmd = r.command(env, spec.Path, namespaceMode(log))
	if policy.Lane {
		if err := r.makeLane(laneEnv); err != nil {
			cg.remove()
			os.Remove(tmp)
			return nil, err
		}
	}
	return r, nil
}

// How a plugin is launched: see command.
type launchMode int

const (
	hostNamespaces launchMode = iota
	rootNamespaces
	ownUserNamespace
)

// namespaceMode is how this host gives its plugins namespaces: at the fork
// as root, else through a user namespace, where it can.
func namespaceMode(log hclog.Logger) launchMode {
	if err := namespacesWork(); err != nil {
		warnNoNamespaces.Do(func() {
			log.Warn("plugins share the host's namespaces: this host cannot make them", "error", err)
		})
		return hostNamespaces
	}
	if os.Geteuid() == 0 {
		return rootNamespaces
	}
	return ownUserNamespace
}

var warnNoNamespaces, warnNoCgroup sync.Once

// command is the launch of path: as root, through the first process of
// namespaces of the plugin's own (nsinit_linux.go); without root, through
// a parent step that makes them in a user namespace; else through the
// launcher alone, in the host's namespaces. Setpgid: a process group of
// the plugin's own, see groupRunner.
func (r *groupRunner) command(env []string, path string, mode launchMode) *exec.Cmd {
	r.mode = mode
	switch mode {
	case rootNamespaces:
		return &exec.Cmd{Path: "/proc/self/exe", Args: []string{"vramward-plugin-init", initArg, path}, Env: env,
			SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Cloneflags: namespaceFlags}}
	case ownUserNamespace:
		return &exec.Cmd{Path: "/proc/self/exe", Args: []string{"vramward-plugin-userns", userNSArg, path}, Env: env,
			SysProcAttr: &syscall.SysProcAttr{Setpgid: true}}
	}
	return &exec.Cmd{Path: "/proc/self/exe", Args: []string{"vramward-plugin-launcher", launcherArg, path}, Env: env,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true}}
}

// namespaceFlags are the namespaces each plugin gets: its own PID namespace
// and a mount namespace with its /proc (it sees and signals no process of
// the host's), and IPC and UTS namespaces (no System V IPC or POSIX message
// queue of the host's). A root host makes them at the plugin's fork; one
// without root through a user namespace (userNSArg).
const namespaceFlags = syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS

func (r *groupRunner) Start(_ context.Context) error {
	recR, recW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer recR.Close()
	// The namespaces' first process reads EOF on hostR once the host is
	// gone: only the host holds hostW (close-on-exec here).
	hostR, hostW, err := os.Pipe()
	if err != nil {
		recW.Close()
		return err
	}
	defer hostR.Close()
	r.hostEnd = hostW
	files := func() []*os.File {
		if r.mode != hostNamespaces {
			return r.withLane([]*os.File{r.bin, recW, hostR})
		}
		return r.withLane([]*os.File{r.bin, recW})
	}
	r.cmd.ExtraFiles = files()
	err = r.start()
	if err != nil && r.mode == rootNamespaces {
		// Namespaces refused (a kernel or a container that allows none):
		// the rest of the sandbox still holds.
		r.log.Warn("the plugin's namespaces could not be made; it shares the host's", "error", err)
		c := r.cmd
		r.cmd = r.command(c.Env, c.Args[2], hostNamespaces)
		r.cmd.ExtraFiles = files()
		err = r.start()
	}
	recW.Close()
	r.closeLaneChild()
	if err != nil {
		r.bin.Close()
		hostW.Close()
		r.closeLaneHost()
		r.cgroup.remove()
		return err
	}
	// The launcher writes its record before it executes the plugin, or
	// its failure before it exits.
	_ = recR.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := json.NewDecoder(recR).Decode(&r.enforced); err != nil {
		r.enforced.Error = "no record from the launcher: " + err.Error()
	}
	if r.enforced.Error != "" {
		return fmt.Errorf("the host's sandbox could not be applied: %s", r.enforced.Error)
	}
	r.plugin = r.pid
	if r.mode != hostNamespaces {
		// The launcher, the namespaces' only other process, wrote the
		// record: it is the plugin now, or about to be.
		first := r.pid
		if r.mode == ownUserNamespace {
			if first, err = onlyChild(r.pid); err != nil {
				return fmt.Errorf("the first process of the plugin's namespaces: %w", err)
			}
		}
		if r.plugin, err = onlyChild(first); err != nil {
			return fmt.Errorf("the plugin's process in its namespaces: %w", err)
		}
		r.enforced.Namespaces = []string{"pid", "mount (its own /proc)", "ipc", "uts"}
		if r.mode == ownUserNamespace {
			r.enforced.Namespaces = append([]string{"user (the host's uid and gid)"}, r.enforced.Namespaces...)
		}
	}
	r.enforced.NoCgroup = r.noCgroup
	if r.cgroup != nil {
		if err := r.cgroup.holds(r.plugin); err != nil {
			return fmt.Errorf("the plugin's cgroup: %w", err)
		}
		r.enforced.Cgroup = r.cgroup.applied
	}
	return nil
}

// onlyChild is the one child of pid, as this process's /proc numbers it.
func onlyChild(pid int) (int, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, err
	}
	var kids []string
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue // a thread that ended meanwhile
		}
		if err != nil {
			return 0, err
		}
		kids = append(kids, strings.Fields(string(b))...)
	}
	if len(kids) != 1 {
		return 0, fmt.Errorf("process %d has %d children (%v), not one", pid, len(kids), kids)
	}
	return strconv.Atoi(kids[0])
}

func (r *groupRunner) start() error {
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return err
	}
	r.cmd.Stdout, r.cmd.Stderr = outW, errW
	err = r.cmd.Start()
	// The child has its own copies; ours would keep the pipes open.
	outW.Close()
	errW.Close()
	if err == nil {
		r.bin.Close()
	}
	if err != nil {
		outR.Close()
		errR.Close()
		return err
	}
	r.stdout, r.stderr = outR, errR
	r.pid = r.cmd.Process.Pid
	r.log.Debug("plugin started", "path", r.name, "pid", r.pid)
	go r.reap()
	return nil
}

// reap waits for the plugin's own process, then ends what is left of its
// group and, after pipeGrace, closes the pipes.
func (r *groupRunner) reap() {
	r.waitErr = r.cmd.Wait()
	r.killGroup()
	r.hostEnd.Close()
	r.closeLaneHost()
	r.cgroup.remove()
	os.RemoveAll(r.tmp)
	close(r.exited)
	time.AfterFunc(pipeGrace, r.closePipes)
}

func (r *groupRunner) closePipes() {
	r.closeMu.Do(func() {
		r.stdout.Close()
		r.stderr.Close()
	})
}

// killGroup sends SIGKILL to the plugin's process group. The group's id is
// the plugin's pid, which the kernel does not hand out again while any
// member of the group lives.
func (r *groupRunner) killGroup() {
	if r.pid > 0 {
		if err := syscall.Kill(-r.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			r.log.Warn("could not kill the plugin's process group", "pid", r.pid, "error", err)
		}
	}
}

func (r *groupRunner) Wait(_ context.Context) error {
	<-r.exited
	return r.waitErr
}

func (r *groupRunner) Kill(_ context.Context) error {
	r.killGroup()
	return nil
}

// Exited reports whether the plugin's own process has ended.
func (r *groupRunner) Exited() bool {
	select {
	case <-r.exited:
		return true
	default:
		return false
	}
}

// ExitState says how the process ended, once it has.
func (r *groupRunner) ExitState() *os.ProcessState {
	if !r.Exited() {
		return nil
	}
	return r.cmd.ProcessState
}

// exitReason says how the plugin ended ("exit status 2", "signal:
// killed"): under namespaces, the first process's exit code says it (128 +
// the signal, as a shell says), unless that process itself was killed.
func (r *groupRunner) exitReason() string {
	st := r.ExitState()
	if st == nil {
		return "exited"
	}
	if code := st.ExitCode(); r.mode != hostNamespaces && code > 128 && code <= 128+64 {
		return "signal: " + syscall.Signal(code-128).String()
	}
	return st.String()
}

func (r *groupRunner) Stdout() io.ReadCloser { return r.stdout }
func (r *groupRunner) Stderr() io.ReadCloser { return r.stderr }
func (r *groupRunner) Name() string          { return r.name }
func (r *groupRunner) ID() string {
	if r.pid == 0 {
		return ""
	}
	return strconv.Itoa(r.pid)
}

func (r *groupRunner) Diagnose(context.Context) string {
	return "the plugin did not answer go-plugin's handshake on stdout: is it a vramward plugin built for this machine, and does it log only to stderr?"
}

func (r *groupRunner) PluginToHost(network, addr string) (string, string, error) {
	return network, addr, nil
}

func (r *groupRunner) HostToPlugin(network, addr string) (string, string, error) {
	return network, addr, nil
}
