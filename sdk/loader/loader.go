// Package loader is the ModelLoader plugin kind: what a loader implements
// (Loader), how a plugin process serves it (Serve) and how the host calls
// it (Client). A loader confines model paths to the configured roots,
// checks the SHA-256 of the file and validates its format; it answers with
// a Summary or a *Rejection whose Reason the host turns into an audit
// event. Loaders emit no events themselves.
package loader

import (
	"context"

	"github.com/vramward/vramward/sdk/schema"
)

// Every loader accepts these keys, so that the host can describe the
// confinement in its events and the conformance harness can configure any
// loader.
const (
	KeyAllowedRoots = "allowed_roots"
	KeyMaxFileBytes = "max_file_bytes"
)

// DefaultMaxFileBytes is large enough for the biggest single-file models
// published (about 0.5 TB at 8 bits), small enough to stop a runaway file.
const DefaultMaxFileBytes = 1 << 40

// StandardSchema is the part of the config schema every loader publishes;
// a loader appends its own attributes.
var StandardSchema = schema.Schema{
	{Name: KeyAllowedRoots, Type: schema.StringList, Required: true,
		Description: "absolute directories model files must lie beneath (symlinks may not leave them)"},
	{Name: KeyMaxFileBytes, Type: schema.Int, Default: int64(DefaultMaxFileBytes),
		Description: "largest model file accepted, in bytes"},
}

// Info names a loader and publishes its config schema.
type Info struct {
	Name    string
	Version string
	Schema  schema.Schema
	Formats []string
}

// Loader is what a model loader plugin implements. The SDK checks that
// Configure came first and was called once; Validate and Inspect may run
// concurrently.
type Loader interface {
	Info() Info
	// Configure receives the config block, already checked against the
	// schema. A *schema.FieldError (or schema.Errors) names the keys at
	// fault.
	Configure(ctx context.Context, cfg schema.Values) error
	// Validate confines path, reads the file once computing its SHA-256
	// and checking its format from the same bytes, and compares the
	// digest with expectedSHA256 (64 hex digits, lower case; the SDK
	// normalises it). A refusal is a *Rejection.
	Validate(ctx context.Context, path, expectedSHA256 string) (*Model, error)
	// Inspect confines path and checks the format only.
	Inspect(ctx context.Context, path string) (*Summary, error)
	// Close releases what Configure opened. Called once, at the end.
	Close() error
}

// Model is a validated model file.
type Model struct {
	SHA256  string  `json:"sha256"` // lower-case hex
	Summary Summary `json:"summary"`
}

// Summary describes a model file that passed the format checks.
type Summary struct {
	Path          string `json:"path"`
	Format        string `json:"format"`
	FormatVersion uint32 `json:"format_version"`
	FileBytes     uint64 `json:"file_bytes"`
	// Architecture is general.architecture: nil (JSON null) when the file
	// has none, "" when it names the empty string.
	Architecture   *string     `json:"architecture"`
	Name           string      `json:"name"`
	FileType       string      `json:"file_type"`
	TensorCount    uint64      `json:"tensor_count"`
	ParameterCount uint64      `json:"parameter_count"`
	TensorBytes    uint64      `json:"tensor_bytes"`
	ContextLength  uint64      `json:"context_length"`
	KVCount        uint64      `json:"kv_count"`
	Alignment      uint64      `json:"alignment"`
	DataOffset     uint64      `json:"data_offset"`
	TensorTypes    []TypeCount `json:"tensor_types"`
	// The chat template is code; only its presence and size are reported.
	ChatTemplatePresent bool       `json:"chat_template_present"`
	ChatTemplateBytes   uint64     `json:"chat_template_bytes"`
	Metadata            []Metadata `json:"metadata"`
}

// ArchitectureName is the architecture, "" when the file names none.
func (s *Summary) ArchitectureName() string {
	if s.Architecture == nil {
		return ""
	}
	return *s.Architecture
}

// TypeCount is how many tensors have one type.
type TypeCount struct {
	Type  string `json:"type"`
	Count uint64 `json:"count"`
}

// Metadata is one metadata pair rendered as sanitised text.
type Metadata struct {
	Key    string `json:"key"`
	Type   string `json:"type"`
	Value  string `json:"value"`
	Length uint64 `json:"length"`
}
