//go:build !vramward_faults

package main

import "github.com/vramward/vramward/sdk/loader"

// withFaults adds nothing to release builds.
func withFaults(l loader.Loader) loader.Loader { return l }
