package ggufloader

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/vramward/vramward/sdk/gguftest"
	"github.com/vramward/vramward/sdk/loader"
	"github.com/vramward/vramward/sdk/schema"
)

func configured(t *testing.T, root string) *Loader {
	t.Helper()
	vals, err := Schema.Decode([]byte(`{"allowed_roots": ["` + root + `"]}`))
	if err != nil {
		t.Fatal(err)
	}
	l := New(nil)
	if err := l.Configure(context.Background(), vals); err != nil {
		t.Fatal(err)
	}
	return l
}

func TestSummaryOfSmall(t *testing.T) {
	root := t.TempDir()
	path, err := gguftest.Small().Write(filepath.Join(root, "m.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	sum := sha256.Sum256(b)
	m, err := configured(t, root).Validate(context.Background(), path, hex.EncodeToString(sum[:]))
	if err != nil {
		t.Fatal(err)
	}
	s := m.Summary
	if s.ArchitectureName() != "llama" || s.Name != "tiny-test" || s.FileType != "MOSTLY_Q8_0" || s.ContextLength != 4096 {
		t.Fatalf("arch %q name %q file type %q context %d", s.ArchitectureName(), s.Name, s.FileType, s.ContextLength)
	}
	if s.FormatVersion != 3 || s.TensorCount != 4 || s.KVCount != 12 || s.ParameterCount != 1088 || s.FileBytes != uint64(len(b)) {
		t.Fatalf("%+v", s)
	}
	want := []loader.TypeCount{{Type: "F16", Count: 1}, {Type: "F32", Count: 1}, {Type: "Q4_K", Count: 1}, {Type: "Q8_0", Count: 1}}
	if len(s.TensorTypes) != len(want) {
		t.Fatalf("tensor types %v", s.TensorTypes)
	}
	for i := range want {
		if s.TensorTypes[i] != want[i] {
			t.Fatalf("tensor types %v, want %v", s.TensorTypes, want)
		}
	}
	if !s.ChatTemplatePresent || s.ChatTemplateBytes != 50 {
		t.Fatalf("chat template %v %d", s.ChatTemplatePresent, s.ChatTemplateBytes)
	}
	byKey := map[string]loader.Metadata{}
	for _, md := range s.Metadata {
		byKey[md.Key] = md
	}
	for key, want := range map[string]loader.Metadata{
		"tokenizer.ggml.tokens":        {Type: "array[string]", Value: "[4 x string]", Length: 4},
		"llama.rope.freq_base":         {Type: "f32", Value: "10000"},
		"tokenizer.ggml.add_bos_token": {Type: "bool", Value: "true"},
		"tokenizer.chat_template":      {Type: "string", Value: "(chat template, 50 bytes, not shown)", Length: 50},
	} {
		want.Key = key
		if byKey[key] != want {
			t.Errorf("%s = %+v, want %+v", key, byKey[key], want)
		}
	}
}

func TestConfigureNamesBadFields(t *testing.T) {
	vals, err := Schema.Decode([]byte(`{"allowed_roots": ["/"], "max_tensors": 0, "max_file_bytes": -1}`))
	if err != nil {
		t.Fatal(err)
	}
	err = New(nil).Configure(context.Background(), vals)
	fields := map[string]bool{}
	for _, fe := range schema.FieldErrors(err) {
		fields[fe.Field] = true
	}
	if !fields["max_tensors"] || !fields["max_file_bytes"] {
		t.Fatalf("%v", err)
	}
}

// Validating a model costs the read-ahead buffers and the metadata, never
// the file: 256 MiB are checked with a fixed, small amount of memory.
func TestValidateDoesNotHoldTheFile(t *testing.T) {
	root := t.TempDir()
	f := &gguftest.File{
		KV:      []gguftest.KV{{Key: "general.architecture", Value: gguftest.Str("big")}},
		Tensors: []gguftest.Tensor{{Name: "w", Dims: []uint64{64 << 20}, Type: gguftest.GGMLF32}},
	}
	path, err := f.Write(filepath.Join(root, "big.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	l := configured(t, root)
	digest := func() string {
		// The first Validate reports the digest in its rejection.
		_, err := l.Validate(context.Background(), path, strings.Repeat("0", 64))
		var r *loader.Rejection
		if !errors.As(err, &r) || r.ActualSHA256 == "" {
			t.Fatalf("%v", err)
		}
		return r.ActualSHA256
	}()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if _, err := l.Validate(context.Background(), path, digest); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	// Three 4 MiB read-ahead buffers, the reader's 64 KiB, the summary.
	if got := after.TotalAlloc - before.TotalAlloc; got > 14<<20 {
		t.Fatalf("validating a 256 MiB file allocated %d MiB", got>>20)
	}
}

// TestArchitectureAbsentOrEmpty: a file without general.architecture and
// one naming "" read differently: null and "" in the summary's JSON (the
// CLI printed "" for both).
func TestArchitectureAbsentOrEmpty(t *testing.T) {
	root := t.TempDir()
	for _, c := range []struct {
		name string
		edit func(*gguftest.File)
		want string
	}{
		{"absent", func(f *gguftest.File) {
			kv := f.KV[:0]
			for _, e := range f.KV {
				if e.Key != "general.architecture" {
					kv = append(kv, e)
				}
			}
			f.KV = kv
		}, `"architecture":null`},
		{"empty", func(f *gguftest.File) {
			for i := range f.KV {
				if f.KV[i].Key == "general.architecture" {
					f.KV[i].Value = gguftest.Str("")
				}
			}
		}, `"architecture":""`},
	} {
		f := gguftest.Small()
		c.edit(f)
		path, err := f.Write(filepath.Join(root, c.name+".gguf"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(path)
		sum := sha256.Sum256(b)
		m, err := configured(t, root).Validate(context.Background(), path, hex.EncodeToString(sum[:]))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		out, err := json.Marshal(m.Summary)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), c.want) {
			t.Errorf("%s: summary JSON lacks %s: %s", c.name, c.want, out)
		}
	}
}
