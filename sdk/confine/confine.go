// Package confine opens model files only beneath a set of allowed root
// directories. Every plugin that opens a model uses it: the loader for its
// checks, the VRAM SDK for the copy to the device. The file is opened once, with the kernel resolving the path
// beneath the root (openat2 with RESOLVE_BENEATH), and the caller reads that
// descriptor and nothing else: a path swapped after the check cannot change
// what is read, and a symlink that leaves the root is refused by the kernel,
// not by string comparison.
package confine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Reason says why a path was refused; the values are the loader's and the
// VRAM backend's reasons of the same name.
type Reason string

const (
	ReasonPathTraversal    Reason = "PATH_TRAVERSAL"
	ReasonNotFound         Reason = "NOT_FOUND"
	ReasonNotRegularFile   Reason = "NOT_REGULAR_FILE"
	ReasonPermissionDenied Reason = "PERMISSION_DENIED"
	ReasonInvalidArgument  Reason = "INVALID_ARGUMENT"
)

// Error is a refused path.
type Error struct {
	Reason Reason
	Path   string
	Roots  []string
	Msg    string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s: %s", e.Path, e.Reason, e.Msg) }

// Roots is a set of allowed directories.
type Roots struct {
	dirs []string
}

// New checks the roots: absolute, clean, existing directories. Each is
// resolved once (symlinks in the operator's own configuration are followed
// here, never in a model path).
func New(roots []string) (*Roots, error) {
	if len(roots) == 0 {
		return nil, errors.New("at least one root is required")
	}
	r := &Roots{}
	for _, d := range roots {
		if !filepath.IsAbs(d) {
			return nil, fmt.Errorf("root %q is not an absolute path", d)
		}
		real, err := filepath.EvalSymlinks(filepath.Clean(d))
		if err != nil {
			return nil, fmt.Errorf("root %q: %w", d, err)
		}
		st, err := os.Stat(real)
		if err != nil {
			return nil, fmt.Errorf("root %q: %w", d, err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("root %q is not a directory", d)
		}
		r.dirs = append(r.dirs, real)
	}
	return r, nil
}

// Dirs returns the resolved roots, for messages and events.
func (r *Roots) Dirs() []string { return append([]string(nil), r.dirs...) }

// File is an open regular file beneath a root.
type File struct {
	*os.File
	// Path is the cleaned absolute path that was opened.
	Path string
	Size int64
}

// Open opens path for reading. A relative path is taken relative to the
// first root. Refusals are *Error: PATH_TRAVERSAL (the path or a
// symlink on it leaves every root, or it has a ".." element),
// NOT_REGULAR_FILE, NOT_FOUND, PERMISSION_DENIED.
func (r *Roots) Open(path string) (*File, error) {
	reject := func(reason Reason, format string, args ...any) error {
		return &Error{Reason: reason, Path: path, Roots: r.Dirs(), Msg: fmt.Sprintf(format, args...)}
	}
	if path == "" {
		return nil, reject(ReasonInvalidArgument, "empty path")
	}
	if strings.IndexByte(path, 0) >= 0 {
		return nil, reject(ReasonInvalidArgument, "the path holds a NUL byte")
	}
	for _, el := range strings.Split(filepath.ToSlash(path), "/") {
		if el == ".." {
			return nil, reject(ReasonPathTraversal, "the path has a \"..\" element")
		}
	}
	abs := path
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(r.dirs[0], abs)
	}
	abs = filepath.Clean(abs)
	root, rel, ok := r.split(abs)
	if !ok {
		return nil, reject(ReasonPathTraversal, "the path is outside the allowed roots")
	}
	f, err := openBeneath(root, rel)
	if err != nil {
		switch {
		case errors.Is(err, unix.EXDEV), errors.Is(err, errSymlinkRefused):
			return nil, reject(ReasonPathTraversal, "resolving the path leaves root %s (through a symlink): %v", root, err)
		case errors.Is(err, unix.ELOOP):
			return nil, reject(ReasonPathTraversal, "too many symlinks, or a /proc magic link, on the path: %v", err)
		case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR):
			return nil, reject(ReasonNotFound, "no such file beneath %s", root)
		case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
			return nil, reject(ReasonPermissionDenied, "%v", err)
		}
		return nil, fmt.Errorf("open %s: %w", abs, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s: %w", abs, err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, reject(ReasonNotRegularFile, "it is a %s, not a regular file", kind(st.Mode()))
	}
	return &File{File: f, Path: abs, Size: st.Size()}, nil
}

// split finds the root abs lies beneath and the path relative to it.
func (r *Roots) split(abs string) (root, rel string, ok bool) {
	for _, d := range r.dirs {
		if abs == d {
			return d, ".", true
		}
		prefix := d
		if !strings.HasSuffix(prefix, "/") {
			prefix += "/"
		}
		if strings.HasPrefix(abs, prefix) {
			return d, abs[len(prefix):], true
		}
	}
	return "", "", false
}

func kind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&os.ModeNamedPipe != 0:
		return "FIFO"
	case m&os.ModeSocket != 0:
		return "socket"
	case m&os.ModeCharDevice != 0:
		return "character device"
	case m&os.ModeDevice != 0:
		return "block device"
	case m&os.ModeSymlink != 0:
		return "symlink"
	}
	return "special file (" + m.String() + ")"
}
