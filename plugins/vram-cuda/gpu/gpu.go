// Package gpu is the copy primitive under the VRAM backend: allocate device
// memory, copy to and from it, free it, and say what kind of memory a
// pointer is. Two drivers implement it: cuda (the CUDA driver API, opened
// at run time) and emulated (host memory, for machines without a GPU,
// labelled "emulated" wherever it shows). Everything above the primitive
// is the same code for both.
package gpu

import (
	"errors"
	"fmt"
)

// Ptr is a device address.
type Ptr uint64

// MemoryType is what CU_POINTER_ATTRIBUTE_MEMORY_TYPE reports.
type MemoryType int

const (
	MemoryHost    MemoryType = 1
	MemoryDevice  MemoryType = 2
	MemoryArray   MemoryType = 3
	MemoryUnified MemoryType = 4
)

func (m MemoryType) String() string {
	switch m {
	case MemoryHost:
		return "host"
	case MemoryDevice:
		return "device"
	case MemoryArray:
		return "array"
	case MemoryUnified:
		return "unified"
	}
	return fmt.Sprintf("memory type %d", int(m))
}

// PointerInfo is what the driver says about an allocation.
type PointerInfo struct {
	Type    MemoryType
	Managed bool
	Device  int // ordinal
}

// Device is one device of a driver.
type Device interface {
	Index() int
	Name() string
	UUID() string
	// MemInfo is the device's free and total memory.
	MemInfo() (free, total uint64, err error)
	// Alloc reserves n bytes; an *OutOfMemory when there is not room.
	Alloc(n uint64) (Ptr, error)
	Free(p Ptr) error
	// CopyHtoD and CopyDtoH copy len(buf) bytes at offset off of p.
	CopyHtoD(p Ptr, off uint64, buf []byte) error
	CopyDtoH(buf []byte, p Ptr, off uint64) error
	Pointer(p Ptr) (PointerInfo, error)
}

// Viewer is implemented by devices whose memory the host can read in
// place (the emulated device's is host memory): the read-back hashes the
// view instead of a copy. The view is valid until the memory is freed.
type Viewer interface {
	View(p Ptr, off uint64, n int) ([]byte, error)
}

// Driver is a set of devices.
type Driver interface {
	// Backend is "cuda" or "emulated".
	Backend() string
	Devices() []Device
	// ChunkBytes is the copy size the driver works best with.
	ChunkBytes() int
	Close() error
}

// OutOfMemory is an allocation that does not fit.
type OutOfMemory struct {
	Requested, Available uint64
	Err                  error // the driver's own error, if any
}

func (e *OutOfMemory) Error() string {
	msg := fmt.Sprintf("out of device memory: %d bytes requested, %d available", e.Requested, e.Available)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// ErrUnavailable wraps why a driver cannot run on this machine.
var ErrUnavailable = errors.New("backend unavailable")
