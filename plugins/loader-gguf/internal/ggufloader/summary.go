package ggufloader

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/vramward/vramward/plugins/loader-gguf/internal/gguf"
	"github.com/vramward/vramward/sdk/loader"
	"github.com/vramward/vramward/sdk/sanitize"
)

// chatTemplatePrefix covers tokenizer.chat_template and its named variants
// (tokenizer.chat_template.tool_use, ...): Jinja code, reported by size.
const chatTemplatePrefix = "tokenizer.chat_template"

// shownStringBytes of a string value appear in the summary.
const shownStringBytes = 256

func summarize(f *gguf.File, path string) loader.Summary {
	s := loader.Summary{
		Path: path, Format: "gguf", FormatVersion: f.Version, FileBytes: f.Size,
		TensorCount: uint64(len(f.Tensors)), ParameterCount: f.Parameters, TensorBytes: f.TensorBytes,
		KVCount: f.KVCount, Alignment: f.Alignment, DataOffset: f.DataOffset,
	}
	if v, ok := f.Get("general.architecture"); ok && v.Type == gguf.TypeString {
		a := sanitize.String(v.Str)
		s.Architecture = &a
	}
	if v, ok := f.Get("general.name"); ok && v.Type == gguf.TypeString {
		s.Name = sanitize.String(v.Str)
	}
	if v, ok := f.Get("general.file_type"); ok && isUint(v.Type) {
		s.FileType = gguf.FileTypeName(v.Uint)
	}
	if v, ok := f.Get(s.ArchitectureName() + ".context_length"); ok && isUint(v.Type) {
		s.ContextLength = v.Uint
	}
	counts := map[string]uint64{}
	for _, t := range f.Tensors {
		counts[t.Type.String()]++
	}
	for name, n := range counts {
		s.TensorTypes = append(s.TensorTypes, loader.TypeCount{Type: name, Count: n})
	}
	sort.Slice(s.TensorTypes, func(i, j int) bool { return s.TensorTypes[i].Type < s.TensorTypes[j].Type })
	s.Metadata = make([]loader.Metadata, 0, len(f.KV))
	for _, kv := range f.KV {
		m := loader.Metadata{Key: sanitize.String(kv.Key), Type: typeName(kv.Value)}
		if strings.HasPrefix(kv.Key, chatTemplatePrefix) && kv.Value.Type == gguf.TypeString {
			if kv.Key == chatTemplatePrefix {
				s.ChatTemplatePresent, s.ChatTemplateBytes = true, kv.Value.Len
			}
			m.Value, m.Length = fmt.Sprintf("(chat template, %d bytes, not shown)", kv.Value.Len), kv.Value.Len
		} else {
			m.Value, m.Length = render(kv.Value)
		}
		s.Metadata = append(s.Metadata, m)
	}
	if held := uint64(len(f.KV)); held < f.KVCount {
		s.Metadata = append(s.Metadata, loader.Metadata{Key: "(more)", Type: "note",
			Value: fmt.Sprintf("%d more metadata pairs, checked, not shown", f.KVCount-held)})
	}
	return s
}

func isUint(t gguf.ValueType) bool {
	return t == gguf.TypeUint8 || t == gguf.TypeUint16 || t == gguf.TypeUint32 || t == gguf.TypeUint64
}

func typeName(v gguf.Value) string {
	if v.Type == gguf.TypeArray {
		return "array[" + v.Elem.String() + "]"
	}
	return v.Type.String()
}

// render shows a value as sanitised text; strings are cut with their full
// length named, arrays are summarised (their elements are not kept).
func render(v gguf.Value) (string, uint64) {
	switch v.Type {
	case gguf.TypeString:
		shown := v.Str
		if len(shown) > shownStringBytes {
			shown = shown[:shownStringBytes]
		}
		out := sanitize.String(shown)
		if v.Len > uint64(len(shown)) {
			out += fmt.Sprintf("... (%d bytes)", v.Len)
		}
		return out, v.Len
	case gguf.TypeArray:
		return fmt.Sprintf("[%d x %s]", v.Len, v.Elem), v.Len
	case gguf.TypeBool:
		return strconv.FormatBool(v.Uint == 1), 0
	case gguf.TypeInt8, gguf.TypeInt16, gguf.TypeInt32, gguf.TypeInt64:
		return strconv.FormatInt(v.Int, 10), 0
	case gguf.TypeFloat32:
		return strconv.FormatFloat(v.Flt, 'g', -1, 32), 0
	case gguf.TypeFloat64:
		return strconv.FormatFloat(v.Flt, 'g', -1, 64), 0
	}
	return strconv.FormatUint(v.Uint, 10), 0
}
