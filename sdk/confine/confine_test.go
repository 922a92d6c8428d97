package confine

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// modes runs a test with openat2 and with the fallback walk.
func modes(t *testing.T, fn func(t *testing.T, openat2 bool)) {
	for _, on := range []bool{true, false} {
		name := "openat2"
		if !on {
			name = "walk"
		}
		t.Run(name, func(t *testing.T) {
			old := useOpenat2
			useOpenat2 = on
			t.Cleanup(func() { useOpenat2 = old })
			fn(t, on)
		})
	}
}

type tree struct {
	root, outside string
	roots         *Roots
}

func newTree(t testing.TB) tree {
	t.Helper()
	base := t.TempDir()
	tr := tree{root: filepath.Join(base, "models"), outside: filepath.Join(base, "outside")}
	for _, d := range []string{tr.root, tr.root + "/sub", tr.outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(tr.root+"/sub/model.gguf", "inside")
	write(tr.outside+"/secret", "outside")
	links := map[string]string{
		tr.root + "/abs-out":     tr.outside + "/secret",
		tr.root + "/rel-out":     "../outside/secret",
		tr.root + "/dir-out":     "../outside",
		tr.root + "/rel-in":      "sub/model.gguf",
		tr.root + "/sub/up-in":   "../sub/model.gguf",
		tr.root + "/proc-magic":  "/proc/self/root/etc/hostname",
		tr.root + "/loop":        "loop",
		tr.root + "/abs-in-root": tr.root + "/sub/model.gguf",
	}
	for l, target := range links {
		if err := os.Symlink(target, l); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(tr.root+"/fifo", 0o644); err != nil {
		t.Fatal(err)
	}
	var err error
	if tr.roots, err = New([]string{tr.root}); err != nil {
		t.Fatal(err)
	}
	return tr
}

func wantReason(t *testing.T, err error, reason Reason, path string) {
	t.Helper()
	var r *Error
	if !errors.As(err, &r) {
		t.Fatalf("want %s, got %v", reason, err)
	}
	if r.Reason != reason {
		t.Fatalf("reason %s, want %s (%v)", r.Reason, reason, err)
	}
	if r.Path != path {
		t.Fatalf("rejection names path %q, want the attempted %q", r.Path, path)
	}
	if len(r.Roots) == 0 {
		t.Fatalf("rejection does not name the allowed roots")
	}
}

func TestRefusals(t *testing.T) {
	modes(t, func(t *testing.T, openat2 bool) {
		tr := newTree(t)
		cases := []struct {
			path   string
			reason Reason
		}{
			{tr.outside + "/secret", ReasonPathTraversal},
			{"/etc/hostname", ReasonPathTraversal},
			{"../outside/secret", ReasonPathTraversal},
			{tr.root + "/sub/../../outside/secret", ReasonPathTraversal},
			{tr.root + "/sub/../sub/model.gguf", ReasonPathTraversal}, // any ".." is refused
			{tr.root + "x/file", ReasonPathTraversal},                 // a sibling sharing the prefix
			{tr.root + "/abs-out", ReasonPathTraversal},
			{tr.root + "/rel-out", ReasonPathTraversal},
			{tr.root + "/dir-out/secret", ReasonPathTraversal},
			{tr.root + "/proc-magic", ReasonPathTraversal},
			{tr.root + "/loop", ReasonPathTraversal},
			{tr.root + "/fifo", ReasonNotRegularFile},
			{tr.root + "/sub", ReasonNotRegularFile},
			{tr.root, ReasonNotRegularFile},
			{tr.root + "/missing.gguf", ReasonNotFound},
			{tr.root + "/sub/model.gguf/x", ReasonNotFound},
			{"", ReasonInvalidArgument},
			{tr.root + "/a\x00b", ReasonInvalidArgument},
		}
		for _, c := range cases {
			f, err := tr.roots.Open(c.path)
			if err == nil {
				f.Close()
				t.Errorf("%q opened; want %s", c.path, c.reason)
				continue
			}
			var r *Error
			if !errors.As(err, &r) || r.Reason != c.reason || r.Path != c.path {
				t.Errorf("%q: got %v, want %s naming the path", c.path, err, c.reason)
			}
		}
	})
}

func TestSymlinksBeneathTheRoot(t *testing.T) {
	modes(t, func(t *testing.T, openat2 bool) {
		tr := newTree(t)
		for _, p := range []string{tr.root + "/rel-in", tr.root + "/sub/up-in"} {
			f, err := tr.roots.Open(p)
			if !openat2 {
				// The walk follows no symlink at all.
				wantReason(t, err, ReasonPathTraversal, p)
				continue
			}
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			b, _ := io.ReadAll(f)
			f.Close()
			if string(b) != "inside" {
				t.Fatalf("%s read %q", p, b)
			}
		}
		// An absolute symlink is refused even when it points inside: the
		// kernel resolves it from "/", which is not beneath the root.
		_, err := tr.roots.Open(tr.root + "/abs-in-root")
		wantReason(t, err, ReasonPathTraversal, tr.root+"/abs-in-root")
	})
}

func TestOpenRegularAndRelative(t *testing.T) {
	modes(t, func(t *testing.T, _ bool) {
		tr := newTree(t)
		for _, p := range []string{tr.root + "/sub/model.gguf", "sub/model.gguf", tr.root + "//sub/./model.gguf"} {
			f, err := tr.roots.Open(p)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if f.Path != tr.root+"/sub/model.gguf" || f.Size != 6 {
				t.Fatalf("%s: opened %s size %d", p, f.Path, f.Size)
			}
			f.Close()
		}
	})
}

// A device beneath a root is refused as such, not read.
func TestDeviceRefused(t *testing.T) {
	modes(t, func(t *testing.T, _ bool) {
		roots, err := New([]string{"/dev"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = roots.Open("/dev/null")
		wantReason(t, err, ReasonNotRegularFile, "/dev/null")
	})
}

// The descriptor is what is read: renaming another file over the path
// after the open changes nothing.
func TestSwapAfterOpenReadsTheOpenedFile(t *testing.T) {
	modes(t, func(t *testing.T, _ bool) {
		tr := newTree(t)
		p := tr.root + "/sub/model.gguf"
		f, err := tr.roots.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := os.WriteFile(tr.root+"/sub/evil", []byte("swapped"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tr.root+"/sub/evil", p); err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(f)
		if string(b) != "inside" {
			t.Fatalf("read %q after the swap", b)
		}
	})
}

func TestPermissionDenied(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads any file")
	}
	tr := newTree(t)
	p := tr.root + "/sub/model.gguf"
	if err := os.Chmod(p, 0); err != nil {
		t.Fatal(err)
	}
	_, err := tr.roots.Open(p)
	wantReason(t, err, ReasonPermissionDenied, p)
}

func TestNewRefusesBadRoots(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	os.WriteFile(file, nil, 0o644)
	for _, roots := range [][]string{nil, {"relative/dir"}, {dir + "/missing"}, {file}} {
		if _, err := New(roots); err == nil {
			t.Errorf("New(%q) accepted", roots)
		}
	}
}
