package pluginhost

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vramward/vramward/internal/testuser"
)

// nobodyEnv names, in the copy of this test binary run as nobody, the
// directory it works in.
const nobodyEnv = "VRAMWARD_TEST_AS_NOBODY"

// TestNamespacesWithoutRoot: a host without root still gives its plugin
// namespaces of its own, through a user namespace that maps the host's uid
// to itself: the plugin (a script, probing before any SDK code runs) is in
// a user namespace, sees no process of the host's in its /proc, cannot
// signal the host or its parent, and holds no capability. The test runs a
// copy of its binary as nobody, which plays the host.
func TestNamespacesWithoutRoot(t *testing.T) {
	if dir := os.Getenv(nobodyEnv); dir != "" {
		asNobody(t, dir)
		return
	}
	_, uid, gid := testuser.Nobody(t)
	dir, err := os.MkdirTemp("", "vramward-nobody-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	must(t, os.Chmod(dir, 0o755))
	must(t, os.Chown(dir, uid, gid))
	self, err := os.Executable()
	must(t, err)
	src, err := os.Open(self)
	must(t, err)
	defer src.Close()
	bin := filepath.Join(dir, "pluginhost.test")
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	must(t, err)
	_, err = io.Copy(dst, src)
	must(t, err)
	must(t, dst.Close())
	cmd := exec.Command(bin, "-test.run=^TestNamespacesWithoutRoot$", "-test.v", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), nobodyEnv+"="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	out, err := cmd.CombinedOutput()
	t.Logf("as nobody:\n%s", out)
	switch {
	case strings.Contains(string(out), "--- SKIP"):
		t.Skip("the host's user cannot make a user namespace here")
	case err != nil || !strings.Contains(string(out), "--- PASS"):
		t.Fatalf("as nobody: %v", err)
	}
}

func asNobody(t *testing.T, dir string) {
	if os.Geteuid() == 0 {
		t.Fatal("runs as root")
	}
	if err := namespacesWork(); err != nil {
		t.Skipf("no user namespace for this user: %v", err)
	}
	out := filepath.Join(dir, "out")
	must(t, os.MkdirAll(out, 0o700))
	host := strconv.Itoa(os.Getpid())
	bin := writeScript(t, dir, "plugin.sh", `
while read -r l; do echo "$l"; done < /proc/self/uid_map > `+out+`/uid_map
while read -r l; do case "$l" in NoNewPrivs*|Seccomp*|CapEff*) echo "$l";; esac; done < /proc/self/status > `+out+`/status
if test -e /proc/`+host+`; then echo visible; else echo hidden; fi > `+out+`/hostproc
kill -HUP `+host+` 2>/dev/null; echo $? > `+out+`/kill
kill -HUP $PPID 2>/dev/null; echo $? > `+out+`/killparent
`+listDescriptors(out))
	read := probeScript(t, bin, out, Limits{}, time.Second)
	checkDescriptors(t, out, true)
	uid := strconv.Itoa(os.Getuid())
	if m := strings.Fields(read("uid_map")); len(m) != 3 || m[0] != uid || m[1] != uid || m[2] != "1" {
		t.Errorf("the plugin's uid_map is %q: not a user namespace of the host's uid alone", m)
	}
	if v := read("hostproc"); v != "hidden" {
		t.Errorf("the host's /proc/%s is %s to the plugin", host, v)
	}
	if k := read("kill"); k == "0" {
		t.Error("the plugin signalled the host")
	}
	if k := read("killparent"); k == "0" {
		t.Error("the plugin signalled its parent")
	}
	status := read("status")
	for _, want := range []string{"NoNewPrivs:\t1", "Seccomp:\t2", "CapEff:\t0000000000000000"} {
		if !strings.Contains(status, want) {
			t.Errorf("the plugin's status lacks %q:\n%s", want, status)
		}
	}
}
