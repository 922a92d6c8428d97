package pluginhost

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vramward/vramward/sdk/audit/sinkclient"
)

// TestCgroupLimitsHoldThePlugin: a plugin (a script, probing before any
// SDK code runs) is in a cgroup of its own from its first instruction; a
// fork bomb stops at pids_max and a memory hog is killed at the memory
// limit, while the host is untouched; the cgroup is gone once the plugin
// is. Runs where the host may make cgroups (root, a memory and a pids
// controller it can reach).
func TestCgroupLimitsHoldThePlugin(t *testing.T) {
	limits := Limits{MemoryBytes: 64 << 20, Pids: 24, Required: true}
	probe, err := newCgroup("probe", limits)
	if err != nil {
		t.Skipf("this host cannot make cgroups: %v", err)
	}
	probe.remove()
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	must(t, os.MkdirAll(out, 0o700))
	bin := writeScript(t, dir, "plugin.sh", `
while read -r l; do echo "$l"; done < /proc/self/cgroup > `+out+`/cgroup
# tail holds what it was given, 256 MiB, before it writes any of it.
yes 0123456789abcdef | head -c 268435456 | tail -c 268435456 | wc -c > `+out+`/hog
# The shell gives up at the first fork the kernel refuses.
i=0
while [ $i -lt 60 ]; do
  echo $i > `+out+`/forks
  sleep 2 &
  i=$((i+1))
done
echo $i > `+out+`/forks
`)
	read := probeScript(t, bin, out, limits, 3*time.Second)
	if cg := read("cgroup"); !strings.Contains(cg, "/vramward-plugin-p-") {
		t.Errorf("the plugin is not in a cgroup of its own:\n%s", cg)
	}
	forks, _ := strconv.Atoi(read("forks"))
	if forks <= 0 || forks >= 24 {
		t.Errorf("the plugin started %d processes beside itself with pids.max 24", forks)
	}
	if hog := read("hog"); hog == "268435456" {
		t.Error("a pipeline holding 256 MiB ran to its end under a 64 MiB limit")
	}
	t.Logf("forks %d of 60, the hog's output %s bytes of 268435456", forks, read("hog"))
	// The host made cgroups for it below its own; none is left.
	h, err := hostCgroups()
	must(t, err)
	dirs := []string{h.v2}
	for _, d := range h.v1 {
		dirs = append(dirs, d)
	}
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var left []string
		for _, d := range dirs {
			m, _ := filepath.Glob(filepath.Join(d, "vramward-plugin-p-*"))
			left = append(left, m...)
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the plugin's cgroups outlive it: %v", left)
		}
	}
}

// TestRequiredLimitsFailClosed: a limit the operator set that the host
// cannot apply fails the plugin's start; the kind's default only says so.
func TestRequiredLimitsFailClosed(t *testing.T) {
	dir := t.TempDir()
	// cgroups below ones that do not exist: none can be made.
	fake := filepath.Join(dir, "cgroup")
	must(t, os.WriteFile(fake, []byte("8:pids:/no/such/cgroup\n4:memory:/no/such/cgroup\n0::/no/such/cgroup\n"), 0o600))
	was := selfCgroup
	selfCgroup = fake
	t.Cleanup(func() { selfCgroup = was })
	if _, err := newCgroup("probe", Limits{Pids: 24}); err == nil {
		t.Fatal("a cgroup was made below one that does not exist")
	}
	bin := writeScript(t, dir, "plugin.sh", "exit 0\n")
	l, sm := testLauncher(t)
	_, err := l.Launch(context.Background(), Spec{Name: "p", Kind: "audit_sink", Path: bin, StartTimeout: time.Second, Limits: Limits{Pids: 24, Required: true}},
		sinkclient.Plugin(sinkclient.Options{Sink: "p", Metrics: sm}))
	if err == nil || !strings.Contains(err.Error(), "cgroup limits") {
		t.Fatalf("a required limit the host cannot apply: %v", err)
	}
	t.Log(err)
	// The same limit as a default: the plugin starts (here: the script
	// runs and fails its handshake), and would say why it has no cgroup.
	out := filepath.Join(dir, "ran")
	bin = writeScript(t, dir, "plugin2.sh", "echo ran > "+out+"\n")
	_, _ = l.Launch(context.Background(), Spec{Name: "p", Kind: "audit_sink", Path: bin, StartTimeout: time.Second, Policy: Policy{WriteDirs: []string{dir}}, Limits: Limits{Pids: 24}},
		sinkclient.Plugin(sinkclient.Options{Sink: "p", Metrics: sm}))
	if _, err := os.Stat(out); err != nil {
		t.Errorf("a default limit the host cannot apply kept the plugin from starting: %v", err)
	}
}

// TestCgroupV2Files: on a cgroup v2 layout (emulated here by files: this
// machine's controllers are all on v1, so the kernel's enforcement is not
// what is checked) the plugin's cgroup is one directory below the host's,
// with memory.max and pids.max, the controllers enabled for the host's
// children, and the one cgroup.procs the launcher enters.
func TestCgroupV2Files(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "cgroup2")
	host := filepath.Join(root, "system.slice", "vramward.service")
	must(t, os.MkdirAll(host, 0o755))
	must(t, os.WriteFile(filepath.Join(host, "cgroup.controllers"), []byte("cpu io memory pids\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(host, "cgroup.subtree_control"), nil, 0o644))
	self := filepath.Join(dir, "cgroup")
	must(t, os.WriteFile(self, []byte("0::/system.slice/vramward.service\n"), 0o644))
	mi := filepath.Join(dir, "mountinfo")
	must(t, os.WriteFile(mi, []byte("30 24 0:26 / "+root+" rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"), 0o644))
	wasSelf, wasMI := selfCgroup, cgroupMountinfo
	selfCgroup, cgroupMountinfo = self, mi
	t.Cleanup(func() { selfCgroup, cgroupMountinfo = wasSelf, wasMI })

	cg, err := newCgroup("audit file", Limits{MemoryBytes: 64 << 20, Pids: 32})
	must(t, err)
	if len(cg.dirs) != 1 || filepath.Dir(cg.dirs[0]) != host || !strings.HasPrefix(filepath.Base(cg.dirs[0]), "vramward-plugin-audit_file-") {
		t.Fatalf("cgroups %v, want one below %s", cg.dirs, host)
	}
	for file, want := range map[string]string{"memory.max": "67108864", "pids.max": "32"} {
		if got, err := os.ReadFile(filepath.Join(cg.dirs[0], file)); err != nil || string(got) != want {
			t.Errorf("%s: %q %v, want %q", file, got, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(cg.dirs[0], "memory.limit_in_bytes")); err == nil {
		t.Error("a cgroup v1 file was written on v2")
	}
	if got, _ := os.ReadFile(filepath.Join(host, "cgroup.subtree_control")); string(got) != "+pids" {
		// Each write replaces the emulated file: the last one enabled pids.
		t.Errorf("cgroup.subtree_control: %q", got)
	}
	if len(cg.procs) != 1 || cg.procs[0] != filepath.Join(cg.dirs[0], "cgroup.procs") {
		t.Errorf("the launcher enters %v", cg.procs)
	}
	if !strings.Contains(cg.applied, "memory.max 67108864 (v2), pids.max 32 (v2)") {
		t.Errorf("status says %q", cg.applied)
	}
}
