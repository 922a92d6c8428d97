//go:build faultinject

package filesink

import (
	"os"
	"syscall"
)

// With the faultinject build tag (tests only; release binaries never carry
// it) the environment can make the kernel fail under the sink:
//
//	VRAMWARD_FAULT_FSYNC=EIO   every fsync of the trail fails with EIO
func init() {
	if os.Getenv("VRAMWARD_FAULT_FSYNC") != "EIO" {
		return
	}
	real := openFile
	openFile = func(path string) (file, error) {
		f, err := real(path)
		if err != nil {
			return nil, err
		}
		return failingSync{f}, nil
	}
}

type failingSync struct{ file }

func (failingSync) Sync() error { return &os.PathError{Op: "fsync", Path: "trail", Err: syscall.EIO} }
