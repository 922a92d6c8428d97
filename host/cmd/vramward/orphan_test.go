package main

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestKilledHostLeavesNoPlugin: a kill -9 of the host ends every process it
// started within seconds: the plugins and, under namespaces, the first
// process of each plugin's namespaces (whose exit makes the kernel kill
// what is left in them), and the plugins' cgroups, which that process
// removes once the plugin is gone. Without a root host, the plugins notice the
// host's death themselves (sdk/internal/parentwatch).
func TestKilledHostLeavesNoPlugin(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, "")
	h := startHost(t, dir)
	h.waitStarted()
	started := descendants(h.cmd.Process.Pid)
	if len(started) == 0 {
		t.Fatal("the host runs no process of its own")
	}
	t.Logf("the host's processes: %v", started)
	cgroups := pluginCgroups(started)
	t.Logf("their cgroups: %v", cgroups)
	if err := h.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	h.wait()
	var left []int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		left = left[:0]
		for _, p := range started {
			if alive(p.pid, p.start) {
				left = append(left, p.pid)
			}
		}
		for _, d := range cgroups {
			if _, err := os.Stat(d); err == nil {
				left = append(left, -1)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after the host's kill -9, these of its processes still run (-1: a cgroup of its plugins is left): %v", left)
		}
	}
}

// pluginCgroups are the directories of the plugin cgroups procs are in.
func pluginCgroups(procs []proc) []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range procs {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(p.pid) + "/cgroup")
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.SplitN(l, ":", 3)
			if len(f) != 3 || !strings.Contains(f[2], "/vramward-plugin-") {
				continue
			}
			root := "/sys/fs/cgroup/unified"
			if f[1] != "" {
				root = "/sys/fs/cgroup/" + strings.TrimPrefix(f[1], "name=")
			} else if _, err := os.Stat(root); err != nil {
				root = "/sys/fs/cgroup"
			}
			if d := root + f[2]; !seen[d] {
				seen[d] = true
				out = append(out, d)
			}
		}
	}
	return out
}

type proc struct {
	pid   int
	start string // its start time, so that a reused pid is told apart
}

// descendants lists every process below pid.
func descendants(pid int) []proc {
	parent := map[int][]proc{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := statFields(n); len(f) > 19 {
			pp, _ := strconv.Atoi(f[1])
			parent[pp] = append(parent[pp], proc{n, f[19]})
		}
	}
	var out []proc
	for todo := []int{pid}; len(todo) > 0; todo = todo[1:] {
		for _, c := range parent[todo[0]] {
			out = append(out, c)
			todo = append(todo, c.pid)
		}
	}
	return out
}

// statFields are /proc/PID/stat's fields after the command's name: state,
// ppid, ... (starttime is the 20th of these).
func statFields(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

// alive says whether the process that started at start still runs (a
// zombie has ended).
func alive(pid int, start string) bool {
	f := statFields(pid)
	return len(f) > 19 && f[19] == start && f[0] != "Z"
}
