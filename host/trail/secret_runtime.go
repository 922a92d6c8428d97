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
