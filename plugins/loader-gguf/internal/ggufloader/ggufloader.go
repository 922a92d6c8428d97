// Package ggufloader is the loader-gguf plugin's Loader: it confines the
// path, refuses a file over the size cap, streams it once through SHA-256
// while the GGUF reader checks its metadata from the same bytes, and answers
// with a summary or a typed rejection.
package ggufloader

import (
	"bufio"
	"context"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/hashicorp/go-hclog"

	"github.com/vramward/vramward/plugins/loader-gguf/internal/gguf"
	"github.com/vramward/vramward/plugins/loader-gguf/internal/hashread"
	"github.com/vramward/vramward/sdk/confine"
	"github.com/vramward/vramward/sdk/loader"
	"github.com/vramward/vramward/sdk/sandbox"
	"github.com/vramward/vramward/sdk/schema"
	"github.com/vramward/vramward/sdk/version"
)

// Schema is the standard loader keys plus the GGUF reader's caps.
var Schema = append(append(schema.Schema{}, loader.StandardSchema...),
	schema.Attribute{Name: "max_tensors", Type: schema.Int, Default: int64(gguf.DefaultLimits().MaxTensors),
		Description: "most tensors a file may declare"},
	schema.Attribute{Name: "max_kv", Type: schema.Int, Default: int64(gguf.DefaultLimits().MaxKV),
		Description: "most metadata pairs a file may declare"},
	schema.Attribute{Name: "max_string_bytes", Type: schema.Int, Default: int64(gguf.DefaultLimits().MaxStringBytes),
		Description: "longest metadata string, in bytes"},
	schema.Attribute{Name: "max_array_len", Type: schema.Int, Default: int64(gguf.DefaultLimits().MaxArrayLen),
		Description: "most elements in one metadata array"},
	schema.Attribute{Name: "max_array_depth", Type: schema.Int, Default: int64(gguf.DefaultLimits().MaxArrayDepth),
		Description: "how deep metadata arrays may nest (1: no arrays of arrays)"},
	schema.Attribute{Name: "max_metadata_bytes", Type: schema.Int, Default: int64(gguf.DefaultLimits().MaxMetadataBytes),
		Description: "largest header, metadata and tensor infos together, in bytes"},
)

// Loader implements loader.Loader for GGUF files.
type Loader struct {
	log      hclog.Logger
	roots    *confine.Roots
	maxBytes int64
	limits   gguf.Limits
}

var _ loader.Loader = (*Loader)(nil)

// New returns an unconfigured loader.
func New(logger hclog.Logger) *Loader {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Loader{log: logger}
}

// Info implements loader.Loader.
func (l *Loader) Info() loader.Info {
	return loader.Info{Name: "loader-gguf", Version: version.Version, Schema: Schema, Formats: []string{"gguf"}}
}

// Configure implements loader.Loader.
func (l *Loader) Configure(_ context.Context, cfg schema.Values) error {
	var errs schema.Errors
	roots, err := confine.New(cfg.StringList(loader.KeyAllowedRoots))
	if err != nil {
		errs = append(errs, &schema.FieldError{Field: loader.KeyAllowedRoots, Msg: err.Error()})
	}
	positive := func(key string) uint64 {
		v := cfg.Int(key)
		if v <= 0 {
			errs = append(errs, &schema.FieldError{Field: key, Msg: fmt.Sprintf("must be positive, got %d", v)})
		}
		return uint64(v)
	}
	l.maxBytes = int64(positive(loader.KeyMaxFileBytes))
	l.limits = gguf.Limits{
		MaxTensors: positive("max_tensors"), MaxKV: positive("max_kv"),
		MaxStringBytes: positive("max_string_bytes"), MaxArrayLen: positive("max_array_len"),
		MaxArrayDepth: int(positive("max_array_depth")), MaxMetadataBytes: positive("max_metadata_bytes"),
	}
	if len(errs) > 0 {
		return errs
	}
	l.roots = roots
	l.log.Info("configured", "allowed_roots", roots.Dirs(), "max_file_bytes", l.maxBytes)
	return nil
}

// SandboxRules implements sandbox.Sandboxed: after Configure the loader
// reads its allowed roots and nothing else.
func (l *Loader) SandboxRules() sandbox.Rules {
	return sandbox.Rules{ReadDirs: l.roots.Dirs()}
}

// open confines path and applies the size cap.
func (l *Loader) open(path string) (*confine.File, error) {
	f, err := l.roots.Open(path)
	var ce *confine.Error
	if errors.As(err, &ce) {
		r := loader.Reject(loader.Reason(ce.Reason), path, "%s", ce.Msg)
		r.AllowedRoots = ce.Roots
		return nil, r
	}
	if err != nil {
		return nil, err
	}
	if f.Size > l.maxBytes {
		f.Close()
		r := loader.Reject(loader.ReasonTooLarge, path, "the file is %d bytes; max_file_bytes is %d", f.Size, l.maxBytes)
		r.Limit, r.Actual = uint64(l.maxBytes), uint64(f.Size)
		return nil, r
	}
	return f, nil
}

// Validate implements loader.Loader. The digest is compared even when the
// format is broken: a file that is not the one expected is reported as
// that (IntegrityViolation, CRITICAL) before anything about its contents.
func (l *Loader) Validate(ctx context.Context, path, expectedSHA256 string) (*loader.Model, error) {
	want, err := hex.DecodeString(expectedSHA256)
	if err != nil || len(want) != 32 {
		return nil, loader.Reject(loader.ReasonInvalidArgument, path, "expected SHA-256 %q is not 64 hex digits", expectedSHA256)
	}
	f, err := l.open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := hashread.Start(ctx, f.File)
	defer s.Close()
	file, perr := gguf.Parse(s, f.Size, l.limits)
	var fe *gguf.Error
	if perr != nil && !errors.As(perr, &fe) {
		return nil, fmt.Errorf("read %s: %w", f.Path, perr)
	}
	digest, err := s.Finish(f.Size)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Path, err)
	}
	got := hex.EncodeToString(digest[:])
	if subtle.ConstantTimeCompare(digest[:], want) != 1 {
		r := loader.Reject(loader.ReasonIntegrityViolation, path, "SHA-256 of the file is %s, expected %s", got, expectedSHA256)
		r.ExpectedSHA256, r.ActualSHA256 = expectedSHA256, got
		return nil, r
	}
	if fe != nil {
		return nil, malformed(path, fe)
	}
	return &loader.Model{SHA256: got, Summary: summarize(file, f.Path)}, nil
}

// Inspect implements loader.Loader: only the metadata is read.
func (l *Loader) Inspect(_ context.Context, path string) (*loader.Summary, error) {
	f, err := l.open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	file, err := gguf.Parse(bufio.NewReaderSize(f, 1<<20), f.Size, l.limits)
	if err != nil {
		var fe *gguf.Error
		if errors.As(err, &fe) {
			return nil, malformed(path, fe)
		}
		return nil, fmt.Errorf("read %s: %w", f.Path, err)
	}
	s := summarize(file, f.Path)
	return &s, nil
}

func malformed(path string, fe *gguf.Error) *loader.Rejection {
	r := loader.Reject(loader.ReasonMalformedModel, path, "%s", fe.Error())
	r.FormatReason, r.Offset = string(fe.Reason), fe.Offset
	return r
}

// Close implements loader.Loader; nothing stays open between calls.
func (l *Loader) Close() error { return nil }
