package trail

// Every operation on an epoch's secret (making, loading, copying out,
// signing with, destroying it) runs through eraseAfter, so that nothing it
// leaves behind outlives it: a scalar decoded into local arrays, the nonce,
// the vector registers a 32-byte copy passed through, a signal frame the
// kernel saved them into. The one lasting copy is the key's own buffer,
// which Destroy zeroes.
//
// Built with GOEXPERIMENT=runtimesecret (the Makefile and CI set it), that
// is runtime/secret.Do: the runtime erases the registers and the stack the
// operation used before Do returns, the heap it allocated once the
// collector frees it, and a signal frame that saved its registers at the
// start of the next collection, which Destroy runs at once
// (clobberSignalFrames). A build without it runs the
// operation plainly and says so (SecretErasure, in `vramward status`):
// then copies may stay in memory until something overwrites them.
