//go:build goexperiment.runtimesecret

package trail

import (
	"runtime"
	"runtime/secret"
)

// SecretErasure names what erases an operation's copies of a secret.
var SecretErasure = func() string {
	switch runtime.GOOS + "/" + runtime.GOARCH {
	case "linux/amd64", "linux/arm64":
		return "runtime/secret"
	}
	return "none: runtime/secret does not erase on " + runtime.GOOS + "/" + runtime.GOARCH
}()

func eraseAfter(op func()) { secret.Do(op) }

// clobberSignalFrames overwrites the signal frames that hold registers of
// secret operations. runtime/secret does not erase a signal frame the
// kernel saved while an operation ran (the registers of a preemption
// signal, a 32-byte key among them): it marks that thread's signal stack
// and, at the start of the next collection, sends the thread a signal
// whose frame overwrites it. A collection now makes that happen before a
// destroyed key's Destroy returns, not whenever the heap next grows.
func clobberSignalFrames() { runtime.GC() }
