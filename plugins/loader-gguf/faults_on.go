//go:build vramward_faults

package main

import (
	"context"
	"os"
	"strings"

	"github.com/vramward/vramward/sdk/loader"
)

// withFaults, in test builds only, makes the plugin die on a file whose
// name holds "crash-me", as a parser bug would: the host's tests check
// that such a file is refused without taking the host down.
func withFaults(l loader.Loader) loader.Loader { return crashing{l} }

type crashing struct{ loader.Loader }

func (c crashing) Validate(ctx context.Context, path, sha string) (*loader.Model, error) {
	if strings.Contains(path, "crash-me") {
		os.Exit(3)
	}
	return c.Loader.Validate(ctx, path, sha)
}
