//go:build !cgo

package gpu

import "fmt"

// OpenCUDA needs cgo (to dlopen the driver); this build has none.
func OpenCUDA() (Driver, error) {
	return nil, fmt.Errorf("%w: this binary was built without cgo, so it cannot load libcuda.so.1", ErrUnavailable)
}
