package trail

import "golang.org/x/sys/cpu"

// clearRegisters zeroes the general-purpose and vector registers a copy of
// a secret may have passed through (see secretthread.go).
func clearRegisters() {
	switch {
	case cpu.X86.HasAVX512F:
		clearRegistersAVX512()
	case cpu.X86.HasAVX:
		clearRegistersAVX()
	default:
		clearRegistersSSE()
	}
}

func clearRegistersSSE()
func clearRegistersAVX()
func clearRegistersAVX512()
