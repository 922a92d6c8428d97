package vram

import (
	"testing"

	"github.com/vramward/vramward/sdk/internal/rpcerr/rpcerrtest"
)

func TestEveryReasonHasACode(t *testing.T) {
	rpcerrtest.EveryReasonHasACode(t, "errors.go", reasonCodes)
}
