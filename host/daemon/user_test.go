package daemon

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/vramward/vramward/host/config"
	"github.com/vramward/vramward/internal/testuser"
)

// TestSinkRunsAsItsUser: the real file sink, with user = "nobody" in its
// plugin block, is launched by the host as nobody (its socket directory,
// its temporary directory and its trail directory are its own, the state
// dir is not); it writes the trail, status says which uid it runs as, and
// the trail verifies.
func TestSinkRunsAsItsUser(t *testing.T) {
	name, uid, gid := testuser.Nobody(t)
	e := newEnv(t, oneSink)
	for _, d := range []string{filepath.Dir(e.dir), e.dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	trailDir := filepath.Join(e.dir, "trail")
	if err := os.Mkdir(trailDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(trailDir, uid, gid); err != nil {
		t.Fatal(err)
	}
	e.cfg.Plugin("file").User = &config.PluginUser{Name: name, UID: uid, GID: gid}
	d := start(t, e)
	emitN(t, d, 50)
	var sandbox string
	for _, p := range d.Status().Plugins {
		if p.Name == "file" {
			sandbox = p.Sandbox
		}
	}
	if !strings.Contains(sandbox, "uid "+strconv.Itoa(uid)) {
		t.Errorf("status says the sink runs %q, want uid %s", sandbox, strconv.Itoa(uid))
	}
	if err := d.Shutdown("test done"); err != nil {
		t.Fatal(err)
	}
	trailFile := filepath.Join(trailDir, "audit.log")
	st, err := os.Stat(trailFile)
	if err != nil {
		t.Fatal(err)
	}
	if owner := st.Sys().(*syscall.Stat_t).Uid; int(owner) != uid {
		t.Errorf("the trail is owned by uid %d, the sink runs as %d", owner, uid)
	}
	verifyTrail(t, e, trailFile)
}
