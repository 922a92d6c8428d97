package pluginhost

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"unsafe"

	"github.com/landlock-lsm/go-landlock/landlock"
	"golang.org/x/sys/unix"
)

// The host starts every plugin through itself: it executes its own binary
// with launcherArg, and that process confines itself and then executes the
// plugin's binary in place, so the plugin begins life inside the sandbox
// (there is no moment when its code runs unconfined) and every limit is the
// host's choice, never the plugin's.
//
// Under namespaces of the plugin's own, the launcher is the child of their
// first process (nsinit_linux.go), which passes fds 3 and 4 on.
//
// Between the two execs the process holds:
//   - fd 3: the plugin binary, opened and hashed by the host;
//   - fd 4: a pipe to the host, for the record of what was applied;
//   - fd 6: the plugin's lane, for a kind that has one (lane.go);
//   - policyEnv: the Policy as JSON, removed before the plugin runs.
const (
	launcherArg = "__vramward-plugin-exec"
	policyEnv   = "VRAMWARD_PLUGIN_POLICY"
	recordFD    = 4
)

func init() {
	if len(os.Args) > 1 && os.Args[1] == launcherArg {
		launch() // never returns
	}
}

// launch applies the policy and executes the plugin; on any failure it
// reports on the record pipe and exits, so no plugin code runs unconfined.
func launch() {
	// Everything below is per thread (credentials, no_new_privs, the
	// seccomp filter): it must be the thread that executes the plugin.
	runtime.LockOSThread()
	rec := os.NewFile(recordFD, "record")
	fail := func(err error) {
		_ = json.NewEncoder(rec).Encode(Enforced{Error: err.Error()})
		fmt.Fprintf(os.Stderr, "vramward plugin launcher: %v\n", err)
		os.Exit(70)
	}
	var p Policy
	if err := json.Unmarshal([]byte(os.Getenv(policyEnv)), &p); err != nil {
		fail(fmt.Errorf("policy: %w", err))
	}
	env := make([]string, 0, len(os.Environ()))
	for _, kv := range os.Environ() {
		if len(kv) < len(policyEnv)+1 || kv[:len(policyEnv)+1] != policyEnv+"=" {
			env = append(env, kv)
		}
	}
	var e Enforced
	if err := sealDescriptors(p.Lane); err != nil {
		fail(err)
	}
	// The cgroup first: everything the plugin does is counted there.
	if err := enterCgroups(p.CgroupProcs); err != nil {
		fail(err)
	}
	if err := dropBounding(); err != nil {
		fail(err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fail(fmt.Errorf("no_new_privs: %w", err))
	}
	// Landlock before the account changes: the launcher opens every path
	// of the policy, which the plugin's account may not be able to.
	abi, netOn, scoped, err := applyLandlock(p)
	if err != nil {
		fail(fmt.Errorf("landlock: %w", err))
	}
	e.Landlock, e.LandlockNet, e.Scoped = abi, netOn, scoped
	if p.User != nil {
		if err := becomeUser(*p.User); err != nil {
			fail(err)
		}
	}
	if err := clearCapabilities(); err != nil {
		fail(err)
	}
	e.CapsDropped = true
	if err := installSeccomp(); err != nil {
		fail(fmt.Errorf("seccomp: %w", err))
	}
	e.Seccomp = true
	if err := json.NewEncoder(rec).Encode(e); err != nil {
		fail(err)
	}
	rec.Close()
	err = unix.Exec("/proc/self/fd/"+strconv.Itoa(binaryFD), os.Args[2:], env)
	fmt.Fprintf(os.Stderr, "vramward plugin launcher: exec the plugin: %v\n", err)
	os.Exit(70)
}

// sealDescriptors marks every descriptor past stderr close-on-exec but the
// binary's and the lane's (when the host passed one): a descriptor the
// host inherited from its own parent without close-on-exec (a shell's, a
// supervisor's) would otherwise pass through the launch chain into every
// plugin. Marked, not closed: the
// Go runtime of this process still uses its own until the exec.
func sealDescriptors(lane bool) error {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("list the launcher's descriptors: %w", err)
	}
	for _, ent := range ents {
		fd, err := strconv.Atoi(ent.Name())
		if err != nil || fd <= 2 || fd == binaryFD || (lane && fd == laneFD) {
			continue
		}
		unix.CloseOnExec(fd)
	}
	return nil
}

// dropBounding and clearCapabilities empty the bounding, ambient,
// inheritable, permitted and effective sets: a plugin run by root is root
// without any privilege (no ptrace of others, no DAC override, no mounts),
// and can get none back.
func dropBounding() error {
	for c := 0; c <= 63; c++ {
		err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0)
		if err == unix.EINVAL {
			break // past the kernel's last capability
		}
		if err != nil && err != unix.EPERM {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && err != unix.EINVAL {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	return nil
}

// becomeUser makes this thread (the one that executes the plugin: execve
// takes its credentials, so raw per-thread calls) the account's: a plugin
// of another uid cannot even read the files root owns that its Landlock
// rules would let it. The kernel clears the capabilities of a uid that
// leaves 0.
func becomeUser(as Account) error {
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, 1, uintptr(unsafe.Pointer(&[]uint32{uint32(as.GID)}[0])), 0); e != 0 {
		return fmt.Errorf("setgroups %d: %w", as.GID, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(as.GID), uintptr(as.GID), uintptr(as.GID)); e != 0 {
		return fmt.Errorf("setresgid %d: %w", as.GID, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(as.UID), uintptr(as.UID), uintptr(as.UID)); e != 0 {
		return fmt.Errorf("setresuid %d: %w", as.UID, e)
	}
	return nil
}

func clearCapabilities() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err == nil && data == [2]unix.CapUserData{} {
		return nil // none held (a unit with CapabilityBoundingSet= may also forbid capset)
	}
	data = [2]unix.CapUserData{}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("clear capabilities: %w", err)
	}
	return nil
}

// applyLandlock confines the file system to p, TCP unless p.Network, and
// (ABI 6 and later) signals and abstract unix sockets to the plugin's own
// domain: it cannot signal the host or a sibling, nor reach their abstract
// sockets.
func applyLandlock(p Policy) (abi int, netRestricted, scoped bool, err error) {
	v, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 {
		return 0, false, false, nil // no Landlock: the status says so
	}
	abi = int(v)
	full := p.With(System)
	var rules []landlock.Rule
	add := func(paths []string, mk func(...string) landlock.FSRule, dev bool) {
		for _, path := range paths {
			if path == "" {
				continue
			}
			r := mk(path).IgnoreIfMissing()
			if dev {
				r = r.WithIoctlDev()
			}
			rules = append(rules, r)
		}
	}
	add(full.ReadDirs, landlock.RODirs, false)
	add(full.ReadFiles, landlock.ROFiles, false)
	add(full.WriteDirs, landlock.RWDirs, false)
	add(full.Devices, landlock.RWDirs, true)
	cfg := landlock.V8
	if p.Network {
		cfg.HandledAccessNet = 0
	}
	// The ruleset is made by go-landlock, and enforced on this thread
	// alone, which executes the plugin: go-landlock's own enforcement on
	// every thread reads /proc/<getpid()>, which in the plugin's PID
	// namespace is another process.
	fd, flags, err := cfg.BestEffort().NewRulesetFD(rules...)
	if err != nil {
		return abi, false, false, err
	}
	defer unix.Close(fd)
	if _, _, errno := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, uintptr(fd), uintptr(flags), 0); errno != 0 {
		return abi, false, false, fmt.Errorf("restrict_self: %w", errno)
	}
	return abi, abi >= 4 && !p.Network, abi >= 6, nil
}
