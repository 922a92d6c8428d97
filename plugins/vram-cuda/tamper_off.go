//go:build !vramward_tamper

package main

import "github.com/vramward/vramward/plugins/vram-cuda/internal/core"

// tamperHook does nothing in release builds: there is no way to change a
// resident shard from outside.
func tamperHook(*core.Core) {}
