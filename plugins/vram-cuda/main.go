// Command vramward-plugin-vram-cuda is the VRAM backend plugin: shards in
// GPU memory through the CUDA driver API (opened at run time; no toolkit
// needed to build), or in host memory with backend = "emulated" where no
// GPU is, labelled so everywhere. The host launches it.
package main

import (
	"github.com/vramward/vramward/plugins/vram-cuda/internal/core"
	"github.com/vramward/vramward/sdk/vram"
)

func main() {
	c := core.New(vram.NewLogger("vram-cuda"))
	tamperHook(c)
	vram.Serve(c)
}
