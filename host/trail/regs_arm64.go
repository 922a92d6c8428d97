package trail

// clearRegisters zeroes the general-purpose and vector registers a copy of
// a secret may have passed through (see secretthread.go).
func clearRegisters()
