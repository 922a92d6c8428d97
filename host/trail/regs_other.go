//go:build !amd64 && !arm64

package trail

// clearRegisters has no implementation on this architecture: secrets are
// still handled on one thread with signals blocked, but its registers are
// not zeroed after.
func clearRegisters() {}
