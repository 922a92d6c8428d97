//go:build vramward_hostile

package main

import (
	"context"
	"os"
	"time"

	"github.com/vramward/vramward/sdk/hostiletest"
	"github.com/vramward/vramward/sdk/loader"
	"github.com/vramward/vramward/sdk/schema"
)

// stderr is the plugin's stderr before the SDK's Serve takes os.Stderr over.
var stderr = os.Stderr

// withProbes, in the host's isolation tests only, turns the loader hostile
// once it is configured (it holds its roots, and its own sandbox is not
// applied yet): it runs every probe of sdk/hostiletest and logs each
// outcome. The host's sandbox must refuse them all.
func withProbes(l loader.Loader) loader.Loader { return probing{l} }

type probing struct{ loader.Loader }

func (p probing) Configure(ctx context.Context, cfg schema.Values) error {
	if err := p.Loader.Configure(ctx, cfg); err != nil {
		return err
	}
	base := hostiletest.Base()
	hostiletest.Log(stderr, hostiletest.Run(base))
	go func() { hostiletest.Log(stderr, hostiletest.Late(base, 15*time.Second)) }()
	return nil
}
