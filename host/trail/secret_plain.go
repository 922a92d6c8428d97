//go:build !goexperiment.runtimesecret

package trail

// SecretErasure names what erases an operation's copies of a secret.
const SecretErasure = "none: built without GOEXPERIMENT=runtimesecret"

func eraseAfter(op func()) { op() }

func clobberSignalFrames() {}
