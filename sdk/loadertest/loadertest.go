// Package loadertest is the conformance harness for model loaders. A loader
// author runs it from a normal `go test`:
//
//	func TestConformance(t *testing.T) {
//		loadertest.Run(t, func(t *testing.T) loader.Loader { return myloader.New(nil) })
//	}
//
// and against the built plugin binary, launched as the host launches it:
//
//	loadertest.RunBinary(t, "bin/vramward-plugin-myloader")
//
// Every check crosses the real gRPC boundary through the SDK's Serve and
// Client. The model files are GGUF files written by sdk/gguftest unless
// WithFixtures supplies files of another format.
package loadertest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode"

	"github.com/vramward/vramward/sdk/gguftest"
	"github.com/vramward/vramward/sdk/handshake"
	"github.com/vramward/vramward/sdk/loader"
	"github.com/vramward/vramward/sdk/plugintest"
)

// Fixtures writes model files into dir and returns their paths.
type Fixtures struct {
	// Valid is a model the loader accepts.
	Valid func(t *testing.T, dir string) string
	// Malformed is a file the loader refuses as MALFORMED_MODEL.
	Malformed func(t *testing.T, dir string) string
	// Hostile is a valid model whose metadata holds control characters,
	// ANSI escapes and bidi overrides, and a chat template whose text
	// (returned as secret) must never appear in a summary.
	Hostile func(t *testing.T, dir string) (path, secret string)
}

// GGUFFixtures are the default fixtures.
var GGUFFixtures = Fixtures{
	Valid: func(t *testing.T, dir string) string {
		return write(t, gguftest.Small(), filepath.Join(dir, "valid.gguf"))
	},
	Malformed: func(t *testing.T, dir string) string {
		f := gguftest.Small()
		f.Tensors[1].Dims = []uint64{64, 1, 1, 1, 1} // five dimensions (CVE-2024-21802)
		return write(t, f, filepath.Join(dir, "malformed.gguf"))
	},
	Hostile: func(t *testing.T, dir string) (string, string) {
		const secret = "{{ SECRET_TEMPLATE_BODY }}"
		f := gguftest.Small()
		f.KV[1].Value = gguftest.Str("evil\x1b[31mname\n\u202eoverride\x07end") // a NUL is refused (NUL_IN_STRING)
		f.KV = append(f.KV, gguftest.KV{Key: "general.description", Value: gguftest.Str("line1\r\nline2\x7f\xff")})
		f.KV[11].Value = gguftest.Str(secret)
		return write(t, f, filepath.Join(dir, "hostile.gguf")), secret
	},
}

func write(t *testing.T, f *gguftest.File, path string) string {
	t.Helper()
	if _, err := f.Write(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// Option changes the harness.
type Option func(*options)

type options struct {
	fixtures Fixtures
}

// WithFixtures replaces the GGUF fixtures, for loaders of other formats.
func WithFixtures(f Fixtures) Option { return func(o *options) { o.fixtures = f } }

type connector func(t *testing.T) *loader.Client

// Run checks a loader served in this process; newLoader makes a fresh,
// unconfigured one for each check.
func Run(t *testing.T, newLoader func(t *testing.T) loader.Loader, opts ...Option) {
	run(t, func(t *testing.T) *loader.Client {
		p := loader.PluginForLoader(newLoader(t), nil).WithClient()
		t.Cleanup(func() { _ = p.Close() })
		return plugintest.InProcess(t, handshake.KindModelLoader, p).(*loader.Client)
	}, opts)
}

// RunBinary checks a built plugin binary, launched with AutoMTLS as the
// host launches it, one fresh process for each check.
func RunBinary(t *testing.T, binary string, opts ...Option) {
	run(t, func(t *testing.T) *loader.Client {
		raw, _ := plugintest.Binary(t, binary, handshake.KindModelLoader, loader.PluginForHost(nil))
		return raw.(*loader.Client)
	}, opts)
}

func run(t *testing.T, connect connector, opts []Option) {
	o := &options{fixtures: GGUFFixtures}
	for _, opt := range opts {
		opt(o)
	}
	checks := []struct {
		name string
		fn   func(t *testing.T, connect connector, o *options)
	}{
		{"Info", checkInfo},
		{"CallsBeforeConfigure", checkBeforeConfigure},
		{"ConfigureRejectsBadConfig", checkConfigureRejects},
		{"ConfigureOnce", checkConfigureOnce},
		{"ValidModel", checkValid},
		{"IntegrityViolation", checkIntegrity},
		{"BadExpectedDigest", checkBadDigest},
		{"PathTraversal", checkTraversal},
		{"SymlinkBeneathRoot", checkSymlinkInside},
		{"NotRegularFile", checkNotRegular},
		{"NotFound", checkNotFound},
		{"TooLarge", checkTooLarge},
		{"MalformedModel", checkMalformed},
		{"IntegrityBeforeFormat", checkIntegrityFirst},
		{"ConcurrentValidate", checkConcurrent},
		{"HostileMetadata", checkHostile},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) { c.fn(t, connect, o) })
	}
}

func ctx(t *testing.T) context.Context { return plugintest.Context(t) }

// env is a configured loader with one root holding the valid fixture.
type env struct {
	c       *loader.Client
	root    string // as configured
	outside string // a directory next to the root
	valid   string
	digest  string
}

func configJSON(t *testing.T, roots []string, extra map[string]any) []byte {
	m := map[string]any{loader.KeyAllowedRoots: roots}
	for k, v := range extra {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newEnv(t *testing.T, connect connector, o *options, extra map[string]any) *env {
	t.Helper()
	base := t.TempDir()
	e := &env{root: filepath.Join(base, "models"), outside: filepath.Join(base, "outside")}
	for _, d := range []string{e.root, e.outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e.valid = o.fixtures.Valid(t, e.root)
	e.digest = fileSHA256(t, e.valid)
	e.c = connect(t)
	if err := e.c.Configure(ctx(t), configJSON(t, []string{e.root}, extra)); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	return e
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// wantRejection asserts err is a *loader.Rejection with reason.
func wantRejection(t *testing.T, err error, reason loader.Reason) *loader.Rejection {
	t.Helper()
	var r *loader.Rejection
	if !errors.As(err, &r) {
		t.Fatalf("want a %s rejection, got %v", reason, err)
	}
	if r.Reason != reason {
		t.Fatalf("reason %s, want %s: %v", r.Reason, reason, err)
	}
	return r
}

func checkInfo(t *testing.T, connect connector, _ *options) {
	info, err := connect(t).Info(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.Name == "" || len(info.Formats) == 0 {
		t.Fatalf("Info names no loader or no format: %+v", info)
	}
	for _, std := range loader.StandardSchema {
		a, ok := info.Schema.Lookup(std.Name)
		if !ok || a.Type != std.Type {
			t.Fatalf("schema lacks the standard key %q (%s)", std.Name, std.Type)
		}
	}
}

func checkBeforeConfigure(t *testing.T, connect connector, o *options) {
	c := connect(t)
	path := o.fixtures.Valid(t, t.TempDir())
	_, err := c.Validate(ctx(t), path, fileSHA256(t, path))
	wantRejection(t, err, loader.ReasonNotConfigured)
	_, err = c.Inspect(ctx(t), path)
	wantRejection(t, err, loader.ReasonNotConfigured)
}

func checkConfigureRejects(t *testing.T, connect connector, _ *options) {
	for name, cfg := range map[string]string{
		"relative root": `{"allowed_roots": ["relative/dir"]}`,
		"missing root":  `{"allowed_roots": ["/nonexistent/vramward/models"]}`,
		"no roots":      `{}`,
		"unknown key":   `{"allowed_roots": ["/"], "allowed_rots": ["/"]}`,
	} {
		err := connect(t).Configure(ctx(t), []byte(cfg))
		r := wantRejection(t, err, loader.ReasonInvalidConfig)
		if len(r.Fields) == 0 {
			t.Errorf("%s: the rejection names no field: %v", name, err)
		}
	}
}

func checkConfigureOnce(t *testing.T, connect connector, o *options) {
	e := newEnv(t, connect, o, nil)
	err := e.c.Configure(ctx(t), configJSON(t, []string{e.root}, nil))
	wantRejection(t, err, loader.ReasonConfigured)
}

func checkValid(t *testing.T, connect connector, o *options) {
	e := newEnv(t, connect, o, nil)
	st, err := os.Stat(e.valid)
	if err != nil {
		t.Fatal(err)
	}
	for _, digest := range []string{e.digest, strings.ToUpper(e.digest)} {
		m, err := e.c.Validate(ctx(t), e.valid, digest)
		if err != nil {
			t.Fatalf("Validate(%s): %v", digest, err)
		}
		if m.SHA256 != e.digest {
			t.Fatalf("sha256 %s, want %s (lower case)", m.SHA256, e.digest)
		}
		if m.Summary.FileBytes != uint64(st.Size()) || m.Summary.Path != e.valid || m.Summary.Format == "" {
			t.Fatalf("summary path %q, %d bytes, format %q; want %q, %d bytes", m.Summary.Path, m.Summary.FileBytes, m.Summary.Format, e.valid, st.Size())
		}
		if m.Summary.TensorCount == 0 || m.Summary.KVCount == 0 || len(m.Summary.Metadata) != int(m.Summary.KVCount) {
			t.Fatalf("summary counts: %d tensors, %d kv, %d metadata entries", m.Summary.TensorCount, m.Summary.KVCount, len(m.Summary.Metadata))
		}
	}
	// Inspect reports the same summary without hashing.
	m, _ := e.c.Validate(ctx(t), e.valid, e.digest)
	s, err := e.c.Inspect(ctx(t), e.valid)
	if err != nil {
		t.Fatal(err)
	}
	if s.TensorCount != m.Summary.TensorCount || s.ParameterCount != m.Summary.ParameterCount || s.Name != m.Summary.Name {
		t.Fatalf("Inspect and Validate disagree: %+v vs %+v", s, m.Summary)
	}
	// A path relative to the first root names the same file.
	if _, err := e.c.Validate(ctx(t), filepath.Base(e.valid), e.digest); err != nil {
		t.Fatalf("relative path: %v", err)
	}
}

func checkIntegrity(t *testing.T, connect connector, o *options) {
	e := newEnv(t, connect, o, nil)
	wrong := strings.Repeat("AB", 32)
	_, err := e.c.Validate(ctx(t), e.valid, wrong)
	r := wantRejection(t, err, loader.ReasonIntegrityViolation)
	if r.ExpectedSHA256 != strings.ToLower(wrong) || r.ActualSHA256 != e.digest || r.Path != e.valid {
		t.Fatalf("rejection expected %q actual %q path %q; want %q, %q, %q", r.ExpectedSHA256, r.ActualSHA256, r.Path, strings.ToLower(wrong), e.digest, e.valid)
	}
}

func checkBadDigest(t *testing.T, connect connector, o *options) {
	e := newEnv(t, connect, o, nil)
	for _, d := range []string{"", "abc", strings.Repeat("g", 64), e.digest + "00"} {
		_, err := e.c.Validate(ctx(t), e.valid, d)
		wantRejection(t, err, loader.ReasonInvalidArgument)
	}
}

func checkTraversal(t *testing.T, connect connector, o *options) {
	e := newEnv(t, connect, o, nil)
	secret := o.fixtures.Valid(t, e.outside)
	digest := fileSHA256(t, secret)
	for link, target := range map[string]string{"abs-link": secret, "rel-link": "../outside/" + filepath.Base(secret)} {
		if err := os.Symlink(target, filepath.Join(e.root, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("../outside", filepath.Join(e.root, "dir-link")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		secret,
		"../outside/" + filepath.Base(secret),
		e.root + "/../outside/" + filepath.Base(secret),
		e.root + "/abs-link",
		e.root + "/rel-link",
		e.root + "/dir-link/" + filepath.Base(secret),
	} {
		_, err := e.c.Validate(ctx(t), p, digest)
		r := wantRejection(t, err, loader.ReasonPathTraversal)
		if r.Path != p || len(r.AllowedRoots) == 0 {
			t.Fatalf("%s: the rejection names path %q and roots %v; want the attempted path and the roots", p, r.Path, r.AllowedRoots)
		}
		_, err = e.c.Inspect(ctx(t), p)
		wantRejection(t, err, loader.ReasonPathTraversal)
	}
}

func checkSymlinkInside(t *testing.T, connect connector, o *options) {
	e := newEnv(t, connect, o, nil)
	link := filepath.Join(e.root, "current.gguf")
	if err := os.Symlink(filepath.Base(e.valid), link); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Validate(ctx(t), link, e.digest); err != nil {
		t.Fatalf("a relative symlink that stays beneath the root was refused: %v", err)
	}
}

func checkNotRegular(t *testing.T, connect connector, o *options) {
	e := newEnv(t, connect, o, nil)
	fifo := filepath.Join(e.root, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// No writer ever opens the FIFO: a loader that waits on it fails by
	// the deadline instead of answering.
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := e.c.Validate(c, fifo, e.digest)
	wantRejection(t, err, loader.ReasonNotRegularFile)
	_, err = e.c.Validate(ctx(t), e.root, e.digest)
	wantRejection(t, err, loader.ReasonNotRegularFile)
}

func checkNotFound(t *testing.T, connect connector, o *options) {
	e := newEnv(t, connect, o, nil)
	_, err := e.c.Validate(ctx(t), filepath.Join(e.root, "missing.gguf"), e.digest)
	wantRejection(t, err, loader.ReasonNotFound)
}

func checkTooLarge(t *testing.T, connect connector, o *options) {
	dir := t.TempDir()
	size := func() int64 {
		st, err := os.Stat(o.fixtures.Valid(t, dir))
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}()
	e := newEnv(t, connect, o, map[string]any{loader.KeyMaxFileBytes: size - 1})
	_, err := e.c.Validate(ctx(t), e.valid, e.digest)
	r := wantRejection(t, err, loader.ReasonTooLarge)
	if r.Limit != uint64(size-1) || r.Actual != uint64(size) {
		t.Fatalf("limit %d actual %d; want %d and %d", r.Limit, r.Actual, size-1, size)
	}
	_, err = e.c.Inspect(ctx(t), e.valid)
	wantRejection(t, err, loader.ReasonTooLarge)
}

func checkMalformed(t *testing.T, connect connector, o *options) {
	e := newEnv(t, connect, o, nil)
	bad := o.fixtures.Malformed(t, e.root)
	_, err := e.c.Validate(ctx(t), bad, fileSHA256(t, bad))
	r := wantRejection(t, err, loader.ReasonMalformedModel)
	if r.FormatReason == "" || r.Offset < 0 || r.Msg == "" {
		t.Fatalf("the rejection lacks the format's reason or the byte offset: %+v", r)
	}
	_, err = e.c.Inspect(ctx(t), bad)
	r2 := wantRejection(t, err, loader.ReasonMalformedModel)
	if r2.FormatReason != r.FormatReason || r2.Offset != r.Offset {
		t.Fatalf("Inspect and Validate disagree: %+v vs %+v", r2, r)
	}
}

func checkIntegrityFirst(t *testing.T, connect connector, o *options) {
	e := newEnv(t, connect, o, nil)
	bad := o.fixtures.Malformed(t, e.root)
	_, err := e.c.Validate(ctx(t), bad, e.digest)
	wantRejection(t, err, loader.ReasonIntegrityViolation)
}

func checkConcurrent(t *testing.T, connect connector, o *options) {
	e := newEnv(t, connect, o, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := e.c.Validate(ctx(t), e.valid, e.digest)
			if err == nil && m.SHA256 != e.digest {
				err = errors.New("wrong digest " + m.SHA256)
			}
			errs <- err
			_, err = e.c.Validate(ctx(t), e.valid, strings.Repeat("0", 64))
			if !errors.Is(err, loader.ReasonIntegrityViolation) {
				errs <- errors.New("concurrent mismatch not reported: " + errString(err))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func checkHostile(t *testing.T, connect connector, o *options) {
	if o.fixtures.Hostile == nil {
		t.Skip("no hostile fixture for this format")
	}
	e := newEnv(t, connect, o, nil)
	path, secret := o.fixtures.Hostile(t, e.root)
	m, err := e.c.Validate(ctx(t), path, fileSHA256(t, path))
	if err != nil {
		t.Fatal(err)
	}
	texts := []string{m.Summary.Name, m.Summary.ArchitectureName(), m.Summary.FileType}
	for _, md := range m.Summary.Metadata {
		texts = append(texts, md.Key, md.Type, md.Value)
	}
	for _, s := range texts {
		if strings.Contains(s, secret) {
			t.Fatalf("the chat template's text appears in the summary: %q", s)
		}
		for _, r := range s {
			if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
				t.Fatalf("unsanitised %U in summary text %q", r, s)
			}
		}
	}
	if !m.Summary.ChatTemplatePresent || m.Summary.ChatTemplateBytes != uint64(len(secret)) {
		t.Fatalf("chat template present %v, %d bytes; want present, %d bytes", m.Summary.ChatTemplatePresent, m.Summary.ChatTemplateBytes, len(secret))
	}
}
