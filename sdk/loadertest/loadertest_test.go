package loadertest_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vramward/vramward/sdk/loader"
	"github.com/vramward/vramward/sdk/loadertest"
	"github.com/vramward/vramward/sdk/schema"
)

// naive is the loader people write first: a string prefix check, a plain
// open that follows symlinks, the whole file read into memory, and a
// format check that looks at the magic only. The harness must fail it.
type naive struct{ roots []string }

func (n *naive) Info() loader.Info {
	return loader.Info{Name: "naive", Version: "test", Schema: loader.StandardSchema, Formats: []string{"gguf"}}
}

func (n *naive) Configure(_ context.Context, cfg schema.Values) error {
	n.roots = cfg.StringList(loader.KeyAllowedRoots)
	for _, r := range n.roots {
		if st, err := os.Stat(r); err != nil || !st.IsDir() || !strings.HasPrefix(r, "/") {
			return &schema.FieldError{Field: loader.KeyAllowedRoots, Msg: "bad root " + r}
		}
	}
	return nil
}

func (n *naive) check(path string) (*loader.Summary, []byte, error) {
	if !strings.HasPrefix(path, "/") {
		path = n.roots[0] + "/" + path
	}
	if !strings.HasPrefix(path, n.roots[0]) {
		return nil, nil, loader.Reject(loader.ReasonPathTraversal, path, "outside")
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, loader.Reject(loader.ReasonNotFound, path, "%v", err)
	}
	if !st.Mode().IsRegular() {
		return nil, nil, loader.Reject(loader.ReasonNotRegularFile, path, "not regular")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	if !bytes.HasPrefix(b, []byte("GGUF")) {
		return nil, nil, loader.Reject(loader.ReasonMalformedModel, path, "magic")
	}
	return &loader.Summary{Path: path, Format: "gguf", FileBytes: uint64(len(b)), TensorCount: 1, KVCount: 1,
		Metadata: []loader.Metadata{{Key: "k", Type: "string", Value: "v"}}}, b, nil
}

func (n *naive) Validate(_ context.Context, path, want string) (*loader.Model, error) {
	s, b, err := n.check(path)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != want {
		r := loader.Reject(loader.ReasonIntegrityViolation, path, "digest")
		r.ExpectedSHA256, r.ActualSHA256 = want, got
		return nil, r
	}
	return &loader.Model{SHA256: hex.EncodeToString(sum[:]), Summary: *s}, nil
}

func (n *naive) Inspect(_ context.Context, path string) (*loader.Summary, error) {
	s, _, err := n.check(path)
	return s, err
}

func (n *naive) Close() error { return nil }

// TestHarnessFailsANaiveLoader runs the harness on the naive loader in a
// child test process and checks that it fails where the naive loader is
// wrong, and only there.
func TestHarnessFailsANaiveLoader(t *testing.T) {
	if os.Getenv("LOADERTEST_NAIVE") == "1" {
		loadertest.Run(t, func(t *testing.T) loader.Loader { return &naive{} })
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHarnessFailsANaiveLoader$", "-test.v")
	cmd.Env = append(os.Environ(), "LOADERTEST_NAIVE=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("the harness passed a naive loader (%v):\n%s", err, out)
	}
	for _, check := range []string{"PathTraversal", "MalformedModel", "TooLarge", "HostileMetadata"} {
		if !strings.Contains(string(out), "--- FAIL: TestHarnessFailsANaiveLoader/"+check+" ") {
			t.Errorf("the harness did not fail the naive loader's %s:\n%s", check, out)
		}
	}
	for _, check := range []string{"Info", "ConfigureOnce", "IntegrityViolation", "BadExpectedDigest", "NotFound"} {
		if !strings.Contains(string(out), "--- PASS: TestHarnessFailsANaiveLoader/"+check+" ") {
			t.Errorf("the harness failed the naive loader's %s, which it gets right:\n%s", check, out)
		}
	}
}
