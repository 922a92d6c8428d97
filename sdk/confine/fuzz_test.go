package confine

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// FuzzOpenStaysBeneath: whatever the path, Open either refuses it with a
// typed rejection or opens a regular file that lies beneath the root; the
// file outside (reachable through several symlinks) is never opened.
func FuzzOpenStaysBeneath(f *testing.F) {
	for _, p := range []string{"sub/model.gguf", "rel-out", "abs-out", "dir-out/secret", "../outside/secret",
		"sub/up-in", "rel-in", "proc-magic", "loop", "fifo", "/etc/passwd", "", ".", "sub//model.gguf", "\x00"} {
		f.Add(p, false)
		f.Add(p, true)
	}
	tr := newTree(f)
	f.Fuzz(func(t *testing.T, p string, absolute bool) {
		if absolute {
			p = tr.root + "/" + p
		}
		file, err := tr.roots.Open(p)
		if err != nil {
			var r *Error
			var pe *os.PathError
			if !errors.As(err, &r) && !errors.As(err, &pe) {
				t.Fatalf("%q: untyped error %v", p, err)
			}
			return
		}
		defer file.Close()
		var st syscall.Stat_t
		if err := syscall.Fstat(int(file.Fd()), &st); err != nil {
			t.Fatal(err)
		}
		var inside syscall.Stat_t
		if err := syscall.Stat(tr.root+"/sub/model.gguf", &inside); err != nil {
			t.Fatal(err)
		}
		if st.Ino != inside.Ino || st.Dev != inside.Dev {
			t.Fatalf("%q opened inode %d, not the one file beneath the root", p, st.Ino)
		}
		if filepath.Dir(file.Path) != tr.root+"/sub" && filepath.Dir(file.Path) != tr.root {
			t.Fatalf("%q reported path %s", p, file.Path)
		}
	})
}
