package daemon

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hashicorp/hcl/v2"

	"github.com/vramward/vramward/host/config"
)

// TestPreflightRefusesModelsRunCannotLoad: a model path that is a FIFO (the
// loader would block on it) or a device (/dev/zero feeds it for ever) is
// an error of validate at the model's block, as it is a refused model in
// run; before, validate returned 0.
func TestPreflightRefusesModelsRunCannotLoad(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "model.gguf")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	at := func(line int) hcl.Range {
		return hcl.Range{Filename: "vramward.hcl", Start: hcl.Pos{Line: line, Column: 1}, End: hcl.Pos{Line: line, Column: 10}}
	}
	cfg := &config.Config{Worker: config.Worker{StateDir: filepath.Join(dir, "state")}, Models: []*config.Model{
		{Name: "fifo", Path: fifo, DeclRange: at(7)},
		{Name: "zero", Path: "/dev/zero", DeclRange: at(11)},
		{Name: "gone", Path: filepath.Join(dir, "none.gguf"), DeclRange: at(15)},
	}}
	found := map[string]string{}
	for _, d := range Preflight(cfg) {
		if d.Summary == "Model refused" {
			found[d.Subject.String()] = d.Detail
		}
	}
	for _, want := range []struct{ at, text string }{
		{"vramward.hcl:7,1-10", "not a regular file"},
		{"vramward.hcl:11,1-10", "not a regular file"},
		{"vramward.hcl:15,1-10", "no such file"},
	} {
		if !strings.Contains(found[want.at], want.text) {
			t.Errorf("at %s: %q, want %q (all: %v)", want.at, found[want.at], want.text, found)
		}
	}
}
