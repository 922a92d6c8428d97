package confine

import (
	"errors"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// openFlags: O_NONBLOCK so that opening a FIFO does not wait for a writer
// (it is then refused as not a regular file); O_NOCTTY so that a terminal
// never becomes ours.
const openFlags = unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK

// useOpenat2 is switched off by tests to exercise the fallback, and by
// openBeneath itself where the kernel (before 5.6) or a seccomp filter
// refuses the call.
var useOpenat2 = true

var errSymlinkRefused = errors.New("symlinks are not followed on a kernel without openat2")

func openBeneath(root, rel string) (*os.File, error) {
	dir, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open root", Path: root, Err: err}
	}
	defer unix.Close(dir)
	if useOpenat2 {
		fd, err := openat2(dir, rel)
		if err == nil {
			return nonblockOff(fd, root+"/"+rel)
		}
		if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM) {
			return nil, &os.PathError{Op: "openat2", Path: root + "/" + rel, Err: err}
		}
		// ENOSYS: an old kernel; EPERM: a seccomp filter that does not
		// know the call. Both fall back to the walk below.
	}
	fd, err := walk(dir, rel)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: root + "/" + rel, Err: err}
	}
	return nonblockOff(fd, root+"/"+rel)
}

func openat2(dir int, rel string) (int, error) {
	how := &unix.OpenHow{
		Flags:   openFlags,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	}
	for try := 0; ; try++ {
		fd, err := unix.Openat2(dir, rel, how)
		// EAGAIN: a rename raced the lookup; the kernel asks for a retry.
		if errors.Is(err, unix.EAGAIN) && try < 8 {
			continue
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return fd, err
	}
}

// walk opens rel one element at a time with O_NOFOLLOW, so that no symlink
// is followed at all: stricter than openat2 (which follows symlinks that
// stay beneath the root), the price of an old kernel.
func walk(dir int, rel string) (int, error) {
	parts := strings.Split(rel, "/")
	cur := dir
	closeCur := func() {
		if cur != dir {
			unix.Close(cur)
		}
	}
	for i, p := range parts {
		last := i == len(parts)-1
		flags := unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if last {
			flags = openFlags | unix.O_NOFOLLOW
		}
		fd, err := unix.Openat(cur, p, flags, 0)
		if err != nil {
			// A symlink gives ELOOP as the last element and ENOTDIR
			// before it; tell a symlink from a missing directory.
			var st unix.Stat_t
			if unix.Fstatat(cur, p, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				err = errSymlinkRefused
			}
			closeCur()
			return -1, err
		}
		closeCur()
		cur = fd
	}
	return cur, nil
}

// nonblockOff turns O_NONBLOCK off again once the file is known to be
// opened: reads of a regular file ignore it, but nothing later should
// depend on that.
func nonblockOff(fd int, name string) (*os.File, error) {
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}
