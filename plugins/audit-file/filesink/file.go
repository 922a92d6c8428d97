package filesink

import (
	"os"
	"syscall"
)

// file is the part of *os.File the sink uses; tests (and the faultinject
// build) put faults between the sink and the kernel through it.
type file interface {
	Write(p []byte) (int, error)
	Sync() error
	Truncate(size int64) error
	Stat() (os.FileInfo, error)
	Chmod(mode os.FileMode) error
	Close() error
}

// openFile opens the live trail for appending without following a symlink.
// O_NONBLOCK keeps a FIFO planted at the path from blocking the open (it
// fails with ENXIO instead); it changes nothing for a regular file.
var openFile = func(path string) (file, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0o600)
}
