// Package testuser gives host tests another account to run a plugin as:
// nobody, when the test runs as root (CI does); elsewhere the test skips.
package testuser

import (
	"os"
	"os/user"
	"strconv"
	"testing"
)

// Nobody returns the name, uid and gid of the user nobody.
func Nobody(t testing.TB) (name string, uid, gid int) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("VRAMWARD_CI") != "" {
			t.Fatal("needs root (CI runs as root)")
		}
		t.Skip("needs root to run a plugin as another user")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody here: %v", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		t.Skipf("nobody has no numeric ids here (%s, %s)", u.Uid, u.Gid)
	}
	return u.Username, uid, gid
}
