// Package sandbox restricts a plugin process, once it is configured, to the
// files its configuration names, with Landlock (best effort: on a kernel
// without it the plugin runs unrestricted and says so). The SDK applies it
// after a successful Configure to every plugin that names its rules
// (Sandboxed); a plugin may also call Restrict itself.
package sandbox

import (
	"fmt"
	"os"
	"strings"
	"sync/atomic"

	"github.com/landlock-lsm/go-landlock/landlock"
	"golang.org/x/sys/unix"
)

// Rules are what a plugin may still reach after Configure.
type Rules struct {
	// ReadDirs and ReadFiles may be read (directories: everything beneath).
	ReadDirs, ReadFiles []string
	// WriteDirs may be read and written, and files made, renamed and
	// removed in them.
	WriteDirs []string
	// Devices are device files, or directories of them, opened read-write
	// with ioctls (a GPU's).
	Devices []string
}

// Sandboxed is a plugin that names its rules; the SDK calls SandboxRules
// after Configure succeeded and restricts the process to them.
type Sandboxed interface {
	SandboxRules() Rules
}

// Status says whether a sandbox is in force, and what it is.
type Status struct {
	Enforced bool
	Detail   string
}

// always are read by every Go program that logs time, resolves a name or
// checks a certificate, whatever its plugin does.
var always = Rules{
	ReadFiles: []string{"/etc/localtime", "/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf"},
	ReadDirs:  []string{"/usr/share/zoneinfo", "/etc/ssl", "/etc/pki", "/usr/share/ca-certificates"},
}

// ABI returns the Landlock ABI version the kernel offers, 0 without it.
func ABI() int {
	v, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 {
		return 0
	}
	return int(v)
}

// Restrict confines this process (every thread) to r for good, with
// no_new_privs set. Missing paths are skipped.
func Restrict(r Rules) (Status, error) {
	abi := ABI()
	if abi == 0 {
		return Status{Detail: "not sandboxed: this kernel has no Landlock"}, nil
	}
	var rules []landlock.Rule
	add := func(paths []string, mk func(...string) landlock.FSRule, dev bool) {
		for _, p := range paths {
			if p == "" {
				continue
			}
			rule := mk(p).IgnoreIfMissing()
			if dev {
				rule = rule.WithIoctlDev()
			}
			rules = append(rules, rule)
		}
	}
	add(append(r.ReadDirs, always.ReadDirs...), landlock.RODirs, false)
	add(append(r.ReadFiles, always.ReadFiles...), landlock.ROFiles, false)
	add(r.WriteDirs, landlock.RWDirs, false)
	add(r.Devices, landlock.RWDirs, true)
	// V5 rules (file system access and device ioctls); BestEffort narrows
	// them to what an older kernel knows.
	if err := landlock.V5.BestEffort().RestrictPaths(rules...); err != nil {
		return Status{Detail: "not sandboxed: " + err.Error()}, err
	}
	return Status{Enforced: true, Detail: fmt.Sprintf("landlock (kernel ABI %d): read %s; write %s; devices %s",
		abi, list(append(r.ReadDirs, r.ReadFiles...)), list(r.WriteDirs), list(r.Devices))}, nil
}

func list(paths []string) string {
	if len(paths) == 0 {
		return "none"
	}
	return strings.Join(paths, ", ")
}

// ProbeEnv names a path a test asks the plugin to open right after it
// restricted itself; the outcome is added to the status. The host never
// passes it (plugins get an allow-listed environment).
const ProbeEnv = "VRAMWARD_SANDBOX_PROBE"

// inPluginProcess is set by the SDK's Serve: only a plugin process of its
// own is restricted, never a program (a test) that serves a plugin
// in-process.
var inPluginProcess atomic.Bool

// EnableForThisProcess lets Apply restrict this process; the SDK's Serve
// functions call it.
func EnableForThisProcess() { inPluginProcess.Store(true) }

// Apply restricts the process when plugin is Sandboxed and reports the
// outcome (with the probe's, when ProbeEnv is set).
func Apply(plugin any, extra Rules) Status {
	if !inPluginProcess.Load() {
		return Status{Detail: "not sandboxed: served in-process"}
	}
	sb, ok := plugin.(Sandboxed)
	if !ok {
		return Status{Detail: "not sandboxed: the plugin names no sandbox rules"}
	}
	r := sb.SandboxRules()
	r.ReadDirs = append(r.ReadDirs, extra.ReadDirs...)
	r.ReadFiles = append(r.ReadFiles, extra.ReadFiles...)
	st, _ := Restrict(r)
	if p := os.Getenv(ProbeEnv); p != "" {
		f, err := os.Open(p)
		if err == nil {
			f.Close()
			st.Detail += "; probe " + p + ": opened"
		} else {
			st.Detail += "; probe " + p + ": " + err.Error()
		}
	}
	return st
}
