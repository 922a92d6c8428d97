package pluginhost

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Policy is what the host lets a plugin process reach, applied by the host
// in the plugin's own process before its binary is executed (see
// launcher_linux.go), whatever the plugin does or claims afterwards.
type Policy struct {
	// ReadDirs and ReadFiles may be read (and executed); WriteDirs read and
	// written; Devices opened read-write with ioctls.
	ReadDirs  []string `json:"read_dirs,omitempty"`
	ReadFiles []string `json:"read_files,omitempty"`
	WriteDirs []string `json:"write_dirs,omitempty"`
	Devices   []string `json:"devices,omitempty"`
	// Network lets the plugin connect and bind TCP sockets; without it
	// Landlock refuses both (UDP and unix sockets are not covered by the
	// Landlock ABIs this code knows).
	Network bool `json:"network,omitempty"`
	// User is the account the launcher switches to before it executes the
	// plugin (Spec.User).
	User *Account `json:"user,omitempty"`
	// CgroupProcs are the cgroup.procs files of the plugin's cgroups,
	// which the launcher enters before anything else.
	CgroupProcs []string `json:"cgroup_procs,omitempty"`
	// Lane says the host passed the plugin a lane at laneFD, which every
	// process of the launch chain passes on (lane.go); without it, that
	// number is nobody's and closes at the exec like any other.
	Lane bool `json:"lane,omitempty"`
}

// System is what every plugin process reads to run at all: its dynamic
// loader and libraries, time zones, name resolution and certificates. No
// vramward secret is under any of these paths in a layout the README
// describes (state_dir and the token live elsewhere).
var System = Policy{
	ReadDirs: []string{"/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/bin", "/bin", "/usr/share/zoneinfo", "/etc/ssl", "/etc/pki",
		"/usr/share/ca-certificates", "/etc/ca-certificates", "/proc/self", "/proc/thread-self", "/sys/fs/cgroup"},
	ReadFiles: []string{"/etc/ld.so.cache", "/etc/localtime", "/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf",
		"/etc/host.conf", "/etc/gai.conf", "/dev/null", "/dev/urandom", "/sys/kernel/mm/transparent_hugepage/hpage_pmd_size"},
}

// With adds o's paths to p.
func (p Policy) With(o Policy) Policy {
	p.ReadDirs = append(append([]string(nil), p.ReadDirs...), o.ReadDirs...)
	p.ReadFiles = append(append([]string(nil), p.ReadFiles...), o.ReadFiles...)
	p.WriteDirs = append(append([]string(nil), p.WriteDirs...), o.WriteDirs...)
	p.Devices = append(append([]string(nil), p.Devices...), o.Devices...)
	p.Network = p.Network || o.Network
	return p
}

// Enforced is what the host knows is in force on a plugin process: the
// launcher's record of what it applied before exec, and what the kernel
// shows in /proc/PID/status after the handshake.
type Enforced struct {
	// From the launcher.
	Landlock    int  `json:"landlock_abi"` // 0: no Landlock on this kernel
	LandlockNet bool `json:"landlock_net"`
	// Scoped: signals and abstract unix sockets reach only the plugin's
	// own Landlock domain (ABI 6).
	Scoped      bool   `json:"scoped"`
	Seccomp     bool   `json:"seccomp"`
	CapsDropped bool   `json:"caps_dropped"`
	Error       string `json:"error,omitempty"`
	// Namespaces the host made the process at its fork.
	Namespaces []string `json:"-"`
	// Cgroup is the plugin's cgroup and its limits, checked in
	// /proc/PID/cgroup; NoCgroup why there is none ("" when no limit
	// was asked for).
	Cgroup   string `json:"-"`
	NoCgroup string `json:"-"`
	// From the kernel.
	NoNewPrivs bool   `json:"-"`
	SeccompOn  bool   `json:"-"`
	CapEff     uint64 `json:"-"`
	UID        int    `json:"-"` // real uid
}

// Sandboxed says whether the process is held by everything the launcher
// applies: no capability, no_new_privs, the seccomp filter, and Landlock
// where the kernel has it.
func (e Enforced) Sandboxed() bool {
	return e.Error == "" && e.NoNewPrivs && e.SeccompOn && e.CapEff == 0 && e.Seccomp && e.CapsDropped && e.Landlock > 0
}

// Describe is the status view's one line.
func (e Enforced) Describe(p Policy) string {
	if e.Error != "" {
		return "host sandbox failed: " + e.Error
	}
	var parts []string
	if e.Landlock > 0 {
		l := fmt.Sprintf("landlock ABI %d: read %s; write %s; devices %s", e.Landlock, list(append(p.ReadDirs, p.ReadFiles...)), list(p.WriteDirs), list(p.Devices))
		switch {
		case p.Network:
			l += "; network allowed"
		case e.LandlockNet:
			l += "; no TCP"
		}
		if e.Scoped {
			l += "; signals and abstract sockets scoped"
		}
		parts = append(parts, l)
	} else {
		parts = append(parts, "no Landlock on this kernel")
	}
	parts = append(parts, fmt.Sprintf("seccomp %v, no_new_privs %v, CapEff %016x, uid %d", e.SeccompOn, e.NoNewPrivs, e.CapEff, e.UID))
	if len(e.Namespaces) > 0 {
		parts = append(parts, "namespaces "+strings.Join(e.Namespaces, ", "))
	} else {
		parts = append(parts, "the host's namespaces")
	}
	switch {
	case e.Cgroup != "":
		parts = append(parts, e.Cgroup)
	case e.NoCgroup != "":
		parts = append(parts, "no cgroup limits: "+e.NoCgroup)
	}
	return "host-enforced: " + strings.Join(parts, "; ")
}

func list(paths []string) string {
	if len(paths) == 0 {
		return "none"
	}
	return strings.Join(paths, ", ")
}

// observe reads what the kernel holds for pid.
func observe(pid int, e *Enforced) error {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		v = strings.TrimSpace(v)
		switch k {
		case "NoNewPrivs":
			e.NoNewPrivs = v == "1"
		case "Seccomp":
			e.SeccompOn = v == "2"
		case "CapEff":
			e.CapEff, _ = strconv.ParseUint(v, 16, 64)
		case "Uid":
			if f := strings.Fields(v); len(f) > 0 {
				e.UID, _ = strconv.Atoi(f[0])
			}
		}
	}
	return sc.Err()
}

// IsPluginProcess says whether pid belongs to a plugin the host runs: it is
// in the process group of one (the seccomp filter keeps a plugin and its
// children from leaving their group).
func IsPluginProcess(pid int32) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/stat")
	if err != nil {
		return true // gone, or hidden: not to be trusted
	}
	// pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return true
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 3 {
		return true
	}
	pgrp, err := strconv.Atoi(f[2])
	if err != nil {
		return true
	}
	found := false
	live.Range(func(k, _ any) bool {
		if k.(*Process).run.pid == pgrp {
			found = true
		}
		return !found
	})
	return found
}

// Observe is the process's sandbox as the kernel shows it now, with the
// launcher's record.
func (p *Process) Observe() Enforced {
	e := p.Enforced
	if err := observe(p.Pid, &e); err != nil && !p.Exited() {
		e.Error = "cannot read its /proc status: " + err.Error()
	}
	return e
}
