package pluginhost

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vramward/vramward/internal/testuser"
	"github.com/vramward/vramward/sdk/audit/sinkclient"
)

// A plugin given a user runs as that user from its first instruction, with
// no capability; a file root owns that its Landlock rules let it read is
// then closed to it (it is not the owner), while a plugin left as root
// without capabilities still reads it, being the owner: the control.
func TestPluginRunsAsItsUser(t *testing.T) {
	_, uid, gid := testuser.Nobody(t)
	dir := t.TempDir()
	must(t, os.Chmod(filepath.Dir(dir), 0o755))
	must(t, os.Chmod(dir, 0o755))
	rootOnly := filepath.Join(dir, "root-only")
	must(t, os.WriteFile(rootOnly, []byte("the-secret"), 0o600))
	run := func(name string, as *Account) (status, read string) {
		out := filepath.Join(dir, name)
		must(t, os.Mkdir(out, 0o700))
		if as != nil {
			must(t, os.Chown(out, as.UID, as.GID))
		}
		bin := writeScript(t, dir, name+".sh", `
while read -r l; do case "$l" in Uid*|Gid*|CapEff*) echo "$l";; esac; done < /proc/self/status > `+out+`/status
cat `+rootOnly+` > `+out+`/read 2>&1
`)
		must(t, os.Chmod(bin, 0o755)) // the plugin's account executes it
		l, sm := testLauncher(t)
		spec := Spec{Name: name, Kind: "audit_sink", Path: bin, StartTimeout: time.Second, User: as,
			Policy: Policy{WriteDirs: []string{out}, ReadFiles: []string{rootOnly}}}
		_, err := l.Launch(context.Background(), spec, sinkclient.Plugin(sinkclient.Options{Sink: name, Metrics: sm}))
		if err == nil {
			t.Fatal("a script was started as a plugin")
		}
		s, err := os.ReadFile(filepath.Join(out, "status"))
		must(t, err)
		r, err := os.ReadFile(filepath.Join(out, "read"))
		must(t, err)
		return string(s), string(r)
	}
	status, read := run("as-nobody", &Account{UID: uid, GID: gid})
	for _, want := range []string{"Uid:\t" + strconv.Itoa(uid) + "\t" + strconv.Itoa(uid), "Gid:\t" + strconv.Itoa(gid) + "\t" + strconv.Itoa(gid), "CapEff:\t0000000000000000"} {
		if !strings.Contains(status, want) {
			t.Errorf("the plugin's status lacks %q:\n%s", want, status)
		}
	}
	if strings.Contains(read, "the-secret") {
		t.Error("a plugin run as nobody read a file only root may read")
	}
	status, read = run("as-root", nil)
	if !strings.Contains(status, "Uid:\t0\t") || !strings.Contains(read, "the-secret") {
		t.Errorf("the control (root without capabilities, the owner) did not read the file: %s %s", status, read)
	}
}
