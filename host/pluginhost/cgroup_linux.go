package pluginhost

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Limits are the cgroup limits the host puts on a plugin: its memory (page
// cache included, as the kernel counts it) and its processes and threads.
// 0 is no limit.
type Limits struct {
	MemoryBytes int64
	Pids        int64
	// Required: a limit that cannot be applied fails the start (the
	// operator set it); otherwise the plugin runs without it and the
	// status says why.
	Required bool
}

// cgroup is a plugin's own cgroup (one directory on cgroup v2, one per
// controller on v1), made below the host's own before the plugin starts.
// The launcher moves itself into it before it confines itself, so the
// plugin and every child it makes are counted from their first
// instruction.
type cgroup struct {
	dirs    []string // removed once the plugin is gone
	procs   []string // the cgroup.procs the launcher writes to
	applied string   // what status shows
}

// selfCgroup names the host's cgroups and cgroupMountinfo where their file
// systems are mounted; tests point them elsewhere (cgroups that do not
// exist, a cgroup v2 layout this machine does not have).
var (
	selfCgroup      = "/proc/self/cgroup"
	cgroupMountinfo = "/proc/self/mountinfo"
)

// newCgroup makes the cgroup for a plugin named name with l.
func newCgroup(name string, l Limits) (*cgroup, error) {
	if l.MemoryBytes == 0 && l.Pids == 0 {
		return nil, nil
	}
	h, err := hostCgroups()
	if err != nil {
		return nil, err
	}
	staleOnce.Do(func() { removeStale(h) })
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	leaf := "vramward-plugin-" + sanitize(name) + "-" + hex.EncodeToString(suffix[:])
	cg := &cgroup{}
	var parts []string
	// set writes one limit: file on v1, v2file on v2.
	set := func(controller, file, v2file, value string) error {
		dir, ok := h.v1[controller]
		v2 := !ok
		if v2 {
			if h.v2 == "" {
				return fmt.Errorf("no cgroup hierarchy has the %s controller", controller)
			}
			dir = h.v2
			if err := enableV2(dir, controller); err != nil {
				return err
			}
		}
		d := filepath.Join(dir, leaf)
		if !containsString(cg.dirs, d) {
			if err := os.Mkdir(d, 0o755); err != nil {
				return fmt.Errorf("make its cgroup: %w", err)
			}
			cg.dirs = append(cg.dirs, d)
			cg.procs = append(cg.procs, filepath.Join(d, "cgroup.procs"))
		}
		if v2 {
			file = v2file
		}
		if err := os.WriteFile(filepath.Join(d, file), []byte(value), 0); err != nil {
			return fmt.Errorf("set %s of cgroup %s: %w", file, d, err)
		}
		ver := "v1"
		if v2 {
			ver = "v2"
		}
		parts = append(parts, fmt.Sprintf("%s %s (%s)", file, value, ver))
		return nil
	}
	var errs []error
	if l.MemoryBytes > 0 {
		errs = append(errs, set("memory", "memory.limit_in_bytes", "memory.max", strconv.FormatInt(l.MemoryBytes, 10)))
	}
	if l.Pids > 0 {
		errs = append(errs, set("pids", "pids.max", "pids.max", strconv.FormatInt(l.Pids, 10)))
	}
	var failed []string
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err.Error())
		}
	}
	if len(failed) > 0 {
		cg.remove()
		return nil, errors.New(strings.Join(failed, "; "))
	}
	cg.applied = "cgroup " + leaf + ": " + strings.Join(parts, ", ")
	return cg, nil
}

// enableV2 makes controller available to the children of dir (the host's
// cgroup). cgroup v2 lets no cgroup that has processes do that, so a host
// alone in its cgroup (a systemd service with Delegate=yes) first moves
// itself into a leaf of its own.
func enableV2(dir, controller string) error {
	if b, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control")); err == nil && containsString(strings.Fields(string(b)), controller) {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("cgroup %s: %w", dir, err)
	}
	if !containsString(strings.Fields(string(b)), controller) {
		return fmt.Errorf("cgroup %s does not have the %s controller (cgroup.controllers: %q)", dir, controller, strings.TrimSpace(string(b)))
	}
	enable := func() error {
		return os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+"+controller), 0)
	}
	if err := enable(); err == nil {
		return nil
	}
	leaf := filepath.Join(dir, "vramward-host")
	if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("cgroup %s holds processes, and a leaf for the host cannot be made: %w", dir, err)
	}
	if err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte("0"), 0); err != nil {
		return fmt.Errorf("move the host into %s: %w", leaf, err)
	}
	if err := enable(); err != nil {
		return fmt.Errorf("enable %s for the children of cgroup %s (it must hold no process but the host's): %w", controller, dir, err)
	}
	return nil
}

// remove deletes the plugin's cgroup once its processes are gone (the
// kernel frees them just after the reap).
func (cg *cgroup) remove() {
	if cg == nil {
		return
	}
	for _, d := range cg.dirs {
		for i := 0; i < 50; i++ {
			if err := os.Remove(d); err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// removeStale removes the empty plugin cgroups a host killed before it
// could remove them left below its cgroup. The kernel refuses to remove a
// cgroup that holds a process; one made in the last minute may be another
// host's about to be entered.
func removeStale(h hostCgroupDirs) {
	dirs := []string{h.v2}
	for _, d := range h.v1 {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		stale, _ := filepath.Glob(filepath.Join(d, "vramward-plugin-*"))
		for _, s := range stale {
			if st, err := os.Stat(s); err == nil && time.Since(st.ModTime()) > time.Minute {
				_ = os.Remove(s)
			}
		}
	}
}

var staleOnce sync.Once

// hostCgroups are the host's own cgroup directories: per controller on
// cgroup v1, and the one on v2.
type hostCgroupDirs struct {
	v1 map[string]string
	v2 string
}

func hostCgroups() (hostCgroupDirs, error) {
	h := hostCgroupDirs{v1: map[string]string{}}
	own, err := os.ReadFile(selfCgroup)
	if err != nil {
		return h, err
	}
	paths := map[string]string{} // controller ("" for v2) -> path
	for _, l := range strings.Split(strings.TrimSpace(string(own)), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		if f[1] == "" {
			paths[""] = f[2]
		}
		for _, c := range strings.Split(f[1], ",") {
			paths[c] = f[2]
		}
	}
	mf, err := os.Open(cgroupMountinfo)
	if err != nil {
		return h, err
	}
	defer mf.Close()
	sc := bufio.NewScanner(mf)
	for sc.Scan() {
		// id parent major:minor root mountpoint options ... - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		root, mnt := f[3], f[4]
		under := func(p string) string {
			rel, err := filepath.Rel(root, p)
			if err != nil || strings.HasPrefix(rel, "..") {
				return ""
			}
			return filepath.Join(mnt, rel)
		}
		switch g[0] {
		case "cgroup2":
			if p, ok := paths[""]; ok && h.v2 == "" {
				h.v2 = under(p)
			}
		case "cgroup":
			for _, opt := range strings.Split(g[2], ",") {
				if p, ok := paths[opt]; ok && (opt == "memory" || opt == "pids") {
					if d := under(p); d != "" {
						h.v1[opt] = d
					}
				}
			}
		}
	}
	return h, sc.Err()
}

// enterCgroups moves the calling process into each cgroup.procs.
func enterCgroups(procs []string) error {
	for _, p := range procs {
		if err := os.WriteFile(p, []byte("0"), 0); err != nil {
			return fmt.Errorf("enter cgroup %s: %w", filepath.Dir(p), err)
		}
	}
	return nil
}

// holds checks that pid is in every one of cg's cgroups, as its
// /proc/PID/cgroup says.
func (cg *cgroup) holds(pid int) error {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return err
	}
	for _, d := range cg.dirs {
		if !strings.Contains(string(b), "/"+filepath.Base(d)+"\n") {
			return fmt.Errorf("process %d is not in cgroup %s: %s", pid, filepath.Base(d), strings.TrimSpace(string(b)))
		}
	}
	return nil
}

func sanitize(name string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, name)
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
