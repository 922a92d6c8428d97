package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vramward/vramward/sdk/plugintest"
	"github.com/vramward/vramward/sdk/vram"
	"github.com/vramward/vramward/sdk/vramtest"
)

var binary, tamperBinary string

func TestMain(m *testing.M) {
	plugintest.Main(m, func(dir string) (err error) {
		// On a GPU node without Go, `make bench-gpu` built these beforehand.
		if b, tb := os.Getenv("VRAMWARD_VRAM_PLUGIN"), os.Getenv("VRAMWARD_VRAM_PLUGIN_TAMPER"); b != "" && tb != "" {
			binary, tamperBinary = b, tb
			return nil
		}
		if binary, err = plugintest.Build(dir, ".", "vramward-plugin-vram-cuda"); err != nil {
			return err
		}
		tamperBinary, err = plugintest.Build(filepath.Join(dir, "tamper"), ".", "vramward-plugin-vram-cuda", "vramward_tamper")
		return err
	})
}

const emulated = `{"backend": "emulated", "emulated_device_bytes": 67108864}`

// TestConformanceBinary runs the harness against a test build of the
// plugin whose one extra is the tamper hook.
func TestConformanceBinary(t *testing.T) {
	ctl := filepath.Join(t.TempDir(), "tamper")
	vramtest.RunBinary(t, tamperBinary, []byte(emulated), []string{"VRAMWARD_TAMPER_FILE=" + ctl},
		vramtest.WithCorrupt(corruptVia(ctl)))
}

// corruptVia asks a tamper build, through its control file, to flip a byte
// of a shard, and waits for its answer.
func corruptVia(ctl string) func(t *testing.T, _ *vram.Client, id string) {
	return func(t *testing.T, _ *vram.Client, id string) {
		os.Remove(ctl + ".done")
		if err := os.WriteFile(ctl, []byte(id+" 4242"), 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(ctl)
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if b, err := os.ReadFile(ctl + ".done"); err == nil {
				if string(b) != "done" {
					t.Fatalf("tamper hook: %s", b)
				}
				return
			}
		}
		t.Fatal("the tamper hook did not answer")
	}
}

// The release build carries no way to change a resident shard.
func TestReleaseBuildHasNoTamperHook(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no Go toolchain here to read the symbols")
	}
	out, err := exec.Command("go", "tool", "nm", binary).Output()
	if err != nil {
		t.Fatal(err)
	}
	const hook = "vram-cuda/internal/core.(*Core).Corrupt"
	if strings.Contains(string(out), hook) {
		t.Fatal("the release binary contains the tamper hook")
	}
	out, _ = exec.Command("go", "tool", "nm", tamperBinary).Output()
	if !strings.Contains(string(out), hook) {
		t.Fatal("the check above looks for the wrong symbol")
	}
}
