// Package proto_test checks that the generated code committed under
// sdk/proto is exactly what `make proto` makes from the .proto files.
package proto_test

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vramward/vramward/sdk/plugintest"
)

func TestGeneratedCodeIsCurrent(t *testing.T) {
	protoc := plugintest.RequireTool(t, "protoc")
	tools := t.TempDir()
	for _, pkg := range []string{"google.golang.org/protobuf/cmd/protoc-gen-go", "google.golang.org/grpc/cmd/protoc-gen-go-grpc"} {
		if out, err := exec.Command("go", "build", "-o", tools+"/", pkg).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", pkg, err, out)
		}
	}
	var protos []string
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".proto") {
			protos = append(protos, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	args := append([]string{"-I", ".",
		"--plugin=protoc-gen-go=" + filepath.Join(tools, "protoc-gen-go"),
		"--plugin=protoc-gen-go-grpc=" + filepath.Join(tools, "protoc-gen-go-grpc"),
		"--go_out=" + out, "--go_opt=paths=source_relative",
		"--go-grpc_out=" + out, "--go-grpc_opt=paths=source_relative"}, protos...)
	if msg, err := exec.Command(protoc, args...).CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, msg)
	}
	n := 0
	err = filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(out, p)
		want, _ := os.ReadFile(p)
		got, err := os.ReadFile(rel)
		if err != nil {
			t.Errorf("%s is generated but not committed (run make proto)", rel)
			return nil
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what make proto generates (run make proto)", rel)
		}
		n++
		return nil
	})
	if err != nil || n == 0 {
		t.Fatalf("compared %d files: %v", n, err)
	}
}
