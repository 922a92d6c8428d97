package pluginhost

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// A plugin kind whose client half implements laneMaker gets a socket pair
// of its own beside go-plugin's connection (the audit sink's record lane,
// sdk/internal/lane): the plugin's end at laneFD, named in its environment
// by LaneEnv, and the host's end handed to the dispensed client. Only the
// launch chain passes it on (nsinit_linux.go); no other plugin's process
// holds either end.
type laneMaker interface{ LaneEnv() string }

// laneUser is a dispensed client that takes the host's end.
type laneUser interface{ AttachLane(net.Conn) }

// laneFD is the descriptor the plugin's end has in every process of the
// launch chain and in the plugin: fds 3 to 5 are the binary, the record
// pipe and the host pipe (runner.go, launcher_linux.go, nsinit_linux.go).
const laneFD = 6

// makeLane makes the pair for one launch and names the plugin's end in
// its environment.
func (r *groupRunner) makeLane(env string) error {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("the plugin's lane: %w", err)
	}
	host := os.NewFile(uintptr(fds[0]), "lane (host)")
	defer host.Close()
	conn, err := net.FileConn(host)
	if err != nil {
		syscall.Close(fds[1])
		return fmt.Errorf("the plugin's lane: %w", err)
	}
	r.laneHost, r.laneChild = conn, os.NewFile(uintptr(fds[1]), "lane (plugin)")
	r.cmd.Env = append(r.cmd.Env, env+"="+strconv.Itoa(laneFD))
	return nil
}

// withLane is the launch's ExtraFiles with the plugin's end at laneFD.
func (r *groupRunner) withLane(files []*os.File) []*os.File {
	if r.laneChild == nil {
		return files
	}
	for len(files) < laneFD-3 {
		files = append(files, nil) // a closed descriptor in the child
	}
	return append(files, r.laneChild)
}

// closeLaneChild closes the host's copy of the plugin's end once the child
// holds its own; closeLaneHost closes the host's end once the plugin is
// gone (a client still holding it reads EOF).
func (r *groupRunner) closeLaneChild() {
	if r.laneChild != nil {
		r.laneChild.Close()
	}
}

func (r *groupRunner) closeLaneHost() {
	if r.laneHost != nil {
		r.laneHost.Close()
	}
}

// passLane keeps laneFD for the next process of the launch chain, as
// ExtraFiles' entry laneFD-3, when the host passed a lane: otherwise the
// number may be anything this process opened (the Go runtime's cgroup
// files, for one).
func passLane(files []*os.File) []*os.File {
	if !laneInherited() {
		return files
	}
	unix.CloseOnExec(laneFD)
	for len(files) < laneFD-3 {
		files = append(files, nil)
	}
	return append(files, os.NewFile(laneFD, "lane"))
}

// laneInherited says whether the host passed this process of the launch
// chain a lane at laneFD (Policy.Lane).
func laneInherited() bool {
	var p Policy
	return json.Unmarshal([]byte(os.Getenv(policyEnv)), &p) == nil && p.Lane
}
