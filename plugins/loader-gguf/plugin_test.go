package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vramward/vramward/plugins/loader-gguf/ggufloader"
	"github.com/vramward/vramward/sdk/loader"
	"github.com/vramward/vramward/sdk/loadertest"
	"github.com/vramward/vramward/sdk/plugintest"
)

var binary string

func TestMain(m *testing.M) {
	plugintest.Main(m, func(dir string) (err error) {
		binary, err = plugintest.Build(dir, ".", "vramward-plugin-loader-gguf")
		return err
	})
}

func TestConformanceInProcess(t *testing.T) {
	loadertest.Run(t, func(t *testing.T) loader.Loader { return ggufloader.New(nil) })
}

func TestConformanceBinary(t *testing.T) {
	loadertest.RunBinary(t, binary)
}

func TestBinaryExists(t *testing.T) {
	if _, err := os.Stat(filepath.Clean(binary)); err != nil {
		t.Fatal(err)
	}
}

// The release build carries no fault hook.
func TestReleaseBuildHasNoFaultHook(t *testing.T) {
	out, err := exec.Command("go", "tool", "nm", binary).Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "main.crashing") {
		t.Fatal("the release binary contains the test-only fault hook")
	}
}
