package pluginhost

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// denied are the system calls no plugin has a use for and a hostile one
// would want: reading or writing another process's memory, loading code
// into the kernel, changing mounts, namespaces, the clock or the machine,
// io_uring (whose operations bypass this filter), and leaving its process
// group (so that the host can tell its processes, and their children, by
// group). Each fails with EPERM.
var denied = []uintptr{
	unix.SYS_PTRACE, unix.SYS_PROCESS_VM_READV, unix.SYS_PROCESS_VM_WRITEV, unix.SYS_PIDFD_GETFD, unix.SYS_KCMP,
	unix.SYS_PROCESS_MADVISE,
	unix.SYS_KEXEC_LOAD, unix.SYS_KEXEC_FILE_LOAD, unix.SYS_BPF, unix.SYS_PERF_EVENT_OPEN, unix.SYS_USERFAULTFD,
	unix.SYS_INIT_MODULE, unix.SYS_FINIT_MODULE, unix.SYS_DELETE_MODULE,
	unix.SYS_MOUNT, unix.SYS_UMOUNT2, unix.SYS_PIVOT_ROOT, unix.SYS_CHROOT, unix.SYS_FSOPEN, unix.SYS_FSMOUNT,
	unix.SYS_FSPICK, unix.SYS_MOVE_MOUNT, unix.SYS_OPEN_TREE, unix.SYS_MOUNT_SETATTR,
	unix.SYS_UNSHARE, unix.SYS_SETNS, unix.SYS_SETSID, unix.SYS_SETPGID,
	unix.SYS_KEYCTL, unix.SYS_ADD_KEY, unix.SYS_REQUEST_KEY,
	unix.SYS_SWAPON, unix.SYS_SWAPOFF, unix.SYS_REBOOT, unix.SYS_SETHOSTNAME, unix.SYS_SETDOMAINNAME,
	unix.SYS_SETTIMEOFDAY, unix.SYS_CLOCK_SETTIME, unix.SYS_CLOCK_ADJTIME, unix.SYS_ADJTIMEX,
	unix.SYS_ACCT, unix.SYS_QUOTACTL, unix.SYS_OPEN_BY_HANDLE_AT, unix.SYS_NAME_TO_HANDLE_AT,
	unix.SYS_SYSLOG, unix.SYS_VHANGUP, unix.SYS_LOOKUP_DCOOKIE,
	// io_uring: a large kernel surface, whose operations no seccomp
	// filter sees; no plugin uses it.
	unix.SYS_IO_URING_SETUP, unix.SYS_IO_URING_ENTER, unix.SYS_IO_URING_REGISTER,
}

// cloneNamespaces are clone(2)'s flags that make a namespace.
const cloneNamespaces = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
	unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP | unix.CLONE_NEWTIME

// auditArch is this build's AUDIT_ARCH value: a filter for one ABI, and a
// system call made through another (x32, compat) kills the process.
func auditArch() (uint32, error) {
	switch runtime.GOARCH {
	case "amd64":
		return unix.AUDIT_ARCH_X86_64, nil
	case "arm64":
		return unix.AUDIT_ARCH_AARCH64, nil
	}
	return 0, fmt.Errorf("no seccomp filter for %s", runtime.GOARCH)
}

// seccompFilter assembles the classic BPF program.
func seccompFilter() ([]unix.SockFilter, error) {
	arch, err := auditArch()
	if err != nil {
		return nil, err
	}
	const (
		offNr   = 0
		offArch = 4
		offArg0 = 16 // low half of args[0] (both ABIs are little-endian)
	)
	ld := func(off uint32) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: off}
	}
	ret := func(v uint32) unix.SockFilter { return unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: v} }
	jeq := func(k uint32, jt uint8) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: k, Jt: jt}
	}
	var prog []unix.SockFilter
	prog = append(prog, ld(offArch), jeq(arch, 1), ret(unix.SECCOMP_RET_KILL_PROCESS), ld(offNr))
	if runtime.GOARCH == "amd64" {
		// x32 system calls (nr | 0x40000000) pass the arch check.
		prog = append(prog, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K, K: 0x40000000, Jt: 0, Jf: 1},
			ret(unix.SECCOMP_RET_KILL_PROCESS))
	}
	// Layout after the checks: allow, eperm, enosys, the clone check.
	n := len(denied)
	for i, nr := range denied {
		prog = append(prog, jeq(uint32(nr), uint8(n-i+2))) // to eperm
	}
	prog = append(prog, jeq(uint32(unix.SYS_CLONE3), 3))                        // to enosys
	prog = append(prog, jeq(uint32(unix.SYS_CLONE), 3))                         // to the clone check
	prog = append(prog, ret(unix.SECCOMP_RET_ALLOW))                            // allow
	prog = append(prog, ret(unix.SECCOMP_RET_ERRNO|uint32(unix.EPERM)&0xffff))  // eperm
	prog = append(prog, ret(unix.SECCOMP_RET_ERRNO|uint32(unix.ENOSYS)&0xffff)) // enosys
	prog = append(prog, ld(offArg0))                                            // clone check
	prog = append(prog, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, K: cloneNamespaces, Jt: 1, Jf: 0})
	prog = append(prog, ret(unix.SECCOMP_RET_ALLOW), ret(unix.SECCOMP_RET_ERRNO|uint32(unix.EPERM)&0xffff))
	return prog, nil
}

// installSeccomp loads the filter on this thread (no_new_privs is set).
func installSeccomp() error {
	prog, err := seccompFilter()
	if err != nil {
		return err
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&fprog)), 0, 0); err != nil {
		return err
	}
	return nil
}
