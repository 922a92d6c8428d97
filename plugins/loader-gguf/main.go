// Command vramward-plugin-loader-gguf is the GGUF model loader plugin: path
// confinement beneath allowed roots, a streamed SHA-256 check and a GGUF
// validator that refuses malformed files with the reason and byte offset.
// The host launches it; it is not meant to be run by hand.
package main

import (
	"github.com/vramward/vramward/plugins/loader-gguf/internal/ggufloader"
	"github.com/vramward/vramward/sdk/loader"
)

func main() {
	loader.Serve(withProbes(withFaults(ggufloader.New(loader.NewLogger("loader-gguf")))))
}
