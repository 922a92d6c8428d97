package gguf

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	gt "github.com/vramward/vramward/sdk/gguftest"
)

var update = flag.Bool("update", false, "rewrite testdata/malformed from the descriptions in this file")

func parseBytes(b []byte) (*File, error) {
	return Parse(bytes.NewReader(b), int64(len(b)), DefaultLimits())
}

func TestParseSmall(t *testing.T) {
	src := gt.Small()
	f, err := parseBytes(src.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if f.Version != 3 || len(f.KV) != len(src.KV) || len(f.Tensors) != len(src.Tensors) {
		t.Fatalf("version %d, %d kv, %d tensors", f.Version, len(f.KV), len(f.Tensors))
	}
	if f.DataOffset != src.DataOffset() || f.Size != src.Size() || f.Alignment != 32 {
		t.Fatalf("data offset %d (want %d), size %d (want %d), alignment %d", f.DataOffset, src.DataOffset(), f.Size, src.Size(), f.Alignment)
	}
	arch, _ := f.Get("general.architecture")
	if arch.Str != "llama" {
		t.Fatalf("architecture %q", arch.Str)
	}
	toks, _ := f.Get("tokenizer.ggml.tokens")
	if toks.Type != TypeArray || toks.Elem != TypeString || toks.Len != 4 {
		t.Fatalf("tokens %+v", toks)
	}
	if v, _ := f.Get("llama.rope.freq_base"); v.Flt != 10000 {
		t.Fatalf("freq_base %v", v.Flt)
	}
	// 64x4 Q8_0 + 64 F32 + 256x2 Q4_K + 64x4 F16
	wantBytes := uint64(2*4*34 + 64*4 + 1*2*144 + 64*4*2)
	wantParams := uint64(256 + 64 + 512 + 256)
	if f.TensorBytes != wantBytes || f.Parameters != wantParams {
		t.Fatalf("tensor bytes %d (want %d), parameters %d (want %d)", f.TensorBytes, wantBytes, f.Parameters, wantParams)
	}
	for i, tn := range f.Tensors {
		if tn.Bytes != gt.TensorBytes(src.Tensors[i]) {
			t.Errorf("tensor %s: %d bytes, writer laid out %d", tn.Name, tn.Bytes, gt.TensorBytes(src.Tensors[i]))
		}
	}
}

func TestParseVersion2AndNoTensors(t *testing.T) {
	f := &gt.File{Version: 2, KV: []gt.KV{{Key: "general.architecture", Value: gt.Str("x")}}}
	got, err := parseBytes(f.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 2 || len(got.Tensors) != 0 || got.TensorBytes != 0 {
		t.Fatalf("%+v", got)
	}
}

func TestParseEveryValueType(t *testing.T) {
	f := &gt.File{KV: []gt.KV{
		{Key: "a.u8", Value: gt.U8(200)}, {Key: "a.i8", Value: gt.I8(-100)},
		{Key: "a.u16", Value: gt.U16(60000)}, {Key: "a.i16", Value: gt.I16(-30000)},
		{Key: "a.u32", Value: gt.U32(4e9)}, {Key: "a.i32", Value: gt.I32(-2e9)},
		{Key: "a.u64", Value: gt.U64(math.MaxUint64)}, {Key: "a.i64", Value: gt.I64(math.MinInt64)},
		{Key: "a.f32", Value: gt.F32(1.5)}, {Key: "a.f64", Value: gt.F64(-2.25)},
		{Key: "a.bool", Value: gt.Bool(true)}, {Key: "a.str", Value: gt.Str(strings.Repeat("x", 2000))},
		{Key: "a.bools", Value: gt.Arr(gt.ValBool, gt.Bool(true), gt.Bool(false))},
	}}
	got, err := parseBytes(f.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Value{
		"a.u8": {Type: TypeUint8, Uint: 200}, "a.i8": {Type: TypeInt8, Int: -100},
		"a.u16": {Type: TypeUint16, Uint: 60000}, "a.i16": {Type: TypeInt16, Int: -30000},
		"a.u32": {Type: TypeUint32, Uint: 4e9}, "a.i32": {Type: TypeInt32, Int: -2e9},
		"a.u64": {Type: TypeUint64, Uint: math.MaxUint64}, "a.i64": {Type: TypeInt64, Int: math.MinInt64},
		"a.f32": {Type: TypeFloat32, Flt: 1.5}, "a.f64": {Type: TypeFloat64, Flt: -2.25},
		"a.bool": {Type: TypeBool, Uint: 1}, "a.str": {Type: TypeString, Str: strings.Repeat("x", keptStringBytes), Len: 2000},
		"a.bools": {Type: TypeArray, Elem: TypeBool, Len: 2},
	}
	for k, w := range want {
		if v, _ := got.Get(k); v != w {
			t.Errorf("%s = %+v, want %+v", k, v, w)
		}
	}
}

// malformed is one refused variant: how to build it, the reason and the
// byte offset the refusal must name.
type malformed struct {
	name   string
	build  func() []byte
	reason Reason
	offset int64 // -1: any
	// mention is a word the message must contain.
	mention string
}

// tightLimits lowers a default limit for the files that test it.
var tightLimits = map[string]func(*Limits){
	"metadata-over-cap": func(l *Limits) { l.MaxMetadataBytes = 512 << 10 },
}

func withKV(kvs ...gt.KV) func() []byte {
	return func() []byte {
		f := gt.Small()
		f.KV = append(f.KV, kvs...)
		return f.Bytes()
	}
}

func withTensor(mod func(t *gt.Tensor)) func() []byte {
	return func() []byte {
		f := gt.Small()
		mod(&f.Tensors[1])
		return f.Bytes()
	}
}

// header is the 24 bytes of a v3 header with the given counts.
func header(tensors, kvs uint64) *gt.Buf {
	return new(gt.Buf).Bytes([]byte("GGUF")).U32(3).U64(tensors).U64(kvs)
}

// smallTensorInfo is the offset of tensor i's info in gt.Small().
func smallTensorInfo(i int) int64 {
	ff, err := parseBytes(gt.Small().Bytes())
	if err != nil {
		panic(err)
	}
	return ff.Tensors[i].InfoOffset
}

func malformedFiles() []malformed {
	tinfo1 := smallTensorInfo(1)
	huge := uint64(math.MaxUint64)
	return []malformed{
		// The five GGUF parser CVEs of February 2024 in llama.cpp: each is
		// a count or length trusted before allocation.
		{"cve-2024-21825-kv-count", func() []byte { return header(0, 0x0fffffffffffffff).B }, ReasonTooManyKV, 16, "metadata pairs"},
		{"cve-2024-23496-string-length", func() []byte {
			return header(0, 1).U64(huge).Bytes([]byte("general.name")).B
		}, ReasonStringTooLong, 24, "limit"},
		{"cve-2024-21802-n-dims", withTensor(func(t *gt.Tensor) { t.Dims = []uint64{64, 1, 1, 1, 1, 1, 1, 1} }), ReasonBadDims, tinfo1 + 8 + int64(len("blk.0.attn_norm.weight")), "8 dimensions"},
		{"cve-2024-21836-tensor-count", func() []byte { return header(0x2000000000000001, 0).B }, ReasonTooManyTensors, 8, "tensors"},
		{"cve-2024-23605-string-array", withKV(gt.KV{Key: "tokenizer.ggml.merges", Value: gt.Raw(gt.ValArray, new(gt.Buf).U32(uint32(gt.ValString)).U64(0x1000000000000000).B)}), ReasonArrayTooLong, -1, "elements"},
		{"cve-2024-23605-string-in-array", withKV(gt.KV{Key: "tokenizer.ggml.merges", Value: gt.Raw(gt.ValArray, new(gt.Buf).U32(uint32(gt.ValString)).U64(2).Str("a").U64(huge).B)}), ReasonStringTooLong, -1, "array"},
		// The size overflows fixed in llama.cpp later (element count, byte
		// size, data end, context size).
		{"size-overflow-element-count", withTensor(func(t *gt.Tensor) {
			t.Dims, t.Bytes = []uint64{1 << 32, 1 << 32}, 32
		}), ReasonSizeOverflow, tinfo1 + 8 + int64(len("blk.0.attn_norm.weight")), "overflow"},
		{"size-overflow-byte-size", withTensor(func(t *gt.Tensor) {
			t.Dims, t.Bytes = []uint64{1 << 62}, 32 // 2^62 elements fit int64; 2^64 bytes of F32 do not
		}), ReasonSizeOverflow, -1, "overflow"},
		{"size-overflow-data-end", withTensor(func(t *gt.Tensor) { t.Offset = gt.Ptr(uint64(math.MaxUint64 - 31)) }), ReasonTensorOutOfPlace, tinfo1, "ggml expects"},
		{"size-overflow-dim-sign", withTensor(func(t *gt.Tensor) { t.Dims, t.Bytes = []uint64{1 << 63}, 32 }), ReasonBadDims, -1, "signed"},
		{"negative-tensor-type", withTensor(func(t *gt.Tensor) { t.Type, t.Bytes = math.MaxUint32, 256 }), ReasonUnknownTensorType, -1, "4294967295"},

		{"bad-magic", func() []byte { f := gt.Small(); f.Magic = "GGML"; return f.Bytes() }, ReasonBadMagic, 0, `"GGML"`},
		{"empty-file", func() []byte { return nil }, ReasonTruncated, 0, "magic"},
		{"version-1", func() []byte { f := gt.Small(); f.Version = 1; return f.Bytes() }, ReasonUnsupportedVersion, 4, "version 1"},
		{"version-4", func() []byte { f := gt.Small(); f.Version = 4; return f.Bytes() }, ReasonUnsupportedVersion, 4, "version 4"},
		{"big-endian", func() []byte { f := gt.Small(); f.BigEndian = true; return f.Bytes() }, ReasonByteSwapped, 4, "big-endian"},
		{"kv-count-beyond-file", func() []byte { return header(0, 1000).B }, ReasonTruncated, 8, "at least"},
		{"tensor-count-beyond-file", func() []byte { return header(1000, 0).B }, ReasonTruncated, 8, "at least"},
		{"truncated-in-metadata", func() []byte { b := gt.Small().Bytes(); return b[:60] }, ReasonTruncated, -1, "left"},
		{"truncated-in-tensor-infos", func() []byte { b := gt.Small().Bytes(); return b[:tinfo1+10] }, ReasonTruncated, -1, ""},
		{"truncated-data", func() []byte { f := gt.Small(); f.DataBytes = gt.Ptr(uint64(64)); return f.Bytes() }, ReasonTensorOutOfBounds, -1, "past the end"},
		{"unknown-value-type", withKV(gt.KV{Key: "x.y", Value: gt.Raw(13, []byte{0})}), ReasonUnknownValueType, -1, "13"},
		{"unknown-array-type", withKV(gt.KV{Key: "x.y", Value: gt.Raw(gt.ValArray, new(gt.Buf).U32(99).U64(1).B)}), ReasonUnknownValueType, -1, "99"},
		{"bool-2", withKV(gt.KV{Key: "x.y", Value: gt.Raw(gt.ValBool, []byte{2})}), ReasonBadBool, -1, "is 2"},
		{"bool-array-7", withKV(gt.KV{Key: "x.y", Value: gt.Raw(gt.ValArray, new(gt.Buf).U32(uint32(gt.ValBool)).U64(3).U8(0).U8(1).U8(7).B)}), ReasonBadBool, -1, "is 7"},
		{"array-too-deep", withKV(gt.KV{Key: "x.y", Value: gt.Arr(gt.ValArray, gt.Arr(gt.ValArray, gt.Arr(gt.ValUint8)))}), ReasonArrayTooDeep, -1, "array of arrays"},
		// Where ggml and a careful reader could disagree (each was found
		// by loading mutants with ggml's own reader), the file is refused.
		{"nested-array", withKV(gt.KV{Key: "x.y", Value: gt.Arr(gt.ValArray, gt.Arr(gt.ValInt32, gt.I32(1)))}), ReasonArrayTooDeep, -1, "ggml refuses"},
		// ggml refuses element type 9 itself: an empty array of arrays too.
		{"empty-array-of-arrays", withKV(gt.KV{Key: "x.a", Value: gt.Arr(gt.ValArray)}), ReasonArrayTooDeep, -1, "even empty"},
		{"key-nul-shadows-architecture", func() []byte {
			f := gt.Small()
			f.KV = append([]gt.KV{{Key: "general.architecture\x00", Value: gt.Str("gpt2")}}, f.KV...)
			return f.Bytes()
		}, ReasonBadKey, 24 + 8 + int64(len("general.architecture")), "NUL"},
		{"key-nul-chat-template", func() []byte {
			f := gt.Small()
			f.KV[len(f.KV)-1].Key = "tokenizer.chat_template\x00"
			return f.Bytes()
		}, ReasonBadKey, -1, "C strings"},
		{"key-nul-alignment", withKV(gt.KV{Key: "general.alignment\x00", Value: gt.U32(64)}), ReasonBadKey, -1, "NUL"},
		{"key-control-byte", withKV(gt.KV{Key: "x.\x1b[31my", Value: gt.U8(1)}), ReasonBadKey, -1, "control byte 0x1b"},
		{"key-upper-case", withKV(gt.KV{Key: "General.Name2", Value: gt.U8(1)}), ReasonBadKey, -1, "lower_snake_case"},
		{"tensor-name-nul-shadow", withTensor(func(t *gt.Tensor) { t.Name = "output.weight\x00shadow" }), ReasonBadTensorName, tinfo1 + 8 + int64(len("output.weight")), "control byte 0x00"},
		{"tensor-name-newline", withTensor(func(t *gt.Tensor) { t.Name = "blk.0\nforged" }), ReasonBadTensorName, -1, "0x0a"},
		{"tensors-out-of-order", func() []byte {
			f := gt.Small()
			b0, b1 := gt.TensorBytes(f.Tensors[0]), gt.TensorBytes(f.Tensors[1])
			f.Tensors[0].Offset, f.Tensors[1].Offset = gt.Ptr(uint64((b1+31)/32*32)), gt.Ptr(uint64(0))
			_ = b0
			return f.Bytes()
		}, ReasonTensorOutOfPlace, -1, "listed order"},
		{"architecture-with-nul", func() []byte { f := gt.Small(); f.KV[0].Value = gt.Str("gpt2\x00llama"); return f.Bytes() }, ReasonNULInString, -1, "C string"},
		{"tensors-gap", withTensor(func(t *gt.Tensor) { t.Offset = gt.Ptr(uint64(4096)) }), ReasonTensorOutOfPlace, tinfo1, "ggml expects"},
		{"array-beyond-file", withKV(gt.KV{Key: "x.y", Value: gt.Raw(gt.ValArray, new(gt.Buf).U32(uint32(gt.ValUint64)).U64(1<<20).B)}), ReasonTruncated, -1, "at least"},
		{"empty-key", withKV(gt.KV{Key: "", Value: gt.U8(1)}), ReasonEmptyKey, -1, "empty"},
		{"duplicate-key", withKV(gt.KV{Key: "general.name", Value: gt.Str("again")}), ReasonDuplicateKey, -1, `"general.name"`},
		{"key-invalid-utf8", withKV(gt.KV{Key: "x.\xff", Value: gt.U8(1)}), ReasonBadKey, -1, "not ASCII"},
		{"key-too-long", withKV(gt.KV{Key: strings.Repeat("k", MaxKeyBytes+1), Value: gt.U8(1)}), ReasonStringTooLong, -1, "65535"},
		{"alignment-not-power-of-two", func() []byte {
			f := gt.Small()
			f.KV[3].Value = gt.U32(48)
			return f.Bytes()
		}, ReasonBadAlignment, -1, "power of two"},
		{"alignment-zero", func() []byte { f := gt.Small(); f.KV[3].Value = gt.U32(0); return f.Bytes() }, ReasonBadAlignment, -1, "power of two"},
		{"alignment-wrong-type", func() []byte { f := gt.Small(); f.KV[3].Value = gt.U64(32); return f.Bytes() }, ReasonBadAlignment, -1, "u32"},
		{"tensor-name-empty", withTensor(func(t *gt.Tensor) { t.Name = "" }), ReasonBadTensorName, tinfo1, "empty"},
		{"tensor-name-64-bytes", withTensor(func(t *gt.Tensor) { t.Name = strings.Repeat("n", 64) }), ReasonTensorNameTooLong, tinfo1, "63"},
		{"tensor-name-invalid-utf8", withTensor(func(t *gt.Tensor) { t.Name = "w\xc0" }), ReasonInvalidUTF8, tinfo1, "UTF-8"},
		{"tensor-name-duplicate", withTensor(func(t *gt.Tensor) { t.Name = "token_embd.weight" }), ReasonDuplicateTensor, tinfo1, "twice"},
		{"tensor-type-removed-q4_2", withTensor(func(t *gt.Tensor) { t.Type, t.Bytes = 4, 256 }), ReasonRemovedTensorType, -1, "Q4_2"},
		{"tensor-type-removed-q4_0_4_4", withTensor(func(t *gt.Tensor) { t.Type, t.Bytes = 31, 256 }), ReasonRemovedTensorType, -1, "Q4_0_4_4"},
		{"tensor-type-unknown", withTensor(func(t *gt.Tensor) { t.Type, t.Bytes = 43, 256 }), ReasonUnknownTensorType, -1, "43"},
		{"ne0-not-block-multiple", withTensor(func(t *gt.Tensor) { t.Type, t.Dims, t.Bytes = gt.GGMLQ8_0, []uint64{48}, 64 }), ReasonBlockMisaligned, -1, "block size 32"},
		{"offset-misaligned", withTensor(func(t *gt.Tensor) { t.Offset = gt.Ptr(uint64(1000)) }), ReasonTensorOutOfPlace, tinfo1, "1000"},
		{"offset-past-end", func() []byte {
			f := gt.Small()
			f.Tensors[1].Offset = gt.Ptr(uint64(1 << 40))
			f.DataBytes = gt.Ptr(uint64(2048))
			return f.Bytes()
		}, ReasonTensorOutOfPlace, tinfo1, "ggml expects"},
		{"tensors-overlap", withTensor(func(t *gt.Tensor) { t.Offset = gt.Ptr(uint64(64)) }), ReasonTensorOutOfPlace, -1, "ggml expects"},
		{"metadata-over-cap", func() []byte {
			f := gt.Small()
			f.KV = append(f.KV, gt.KV{Key: "x.big", Value: gt.Str(strings.Repeat("b", 900<<10))})
			return f.Bytes()
		}, ReasonMetadataTooLarge, -1, "cap"},
	}
}

func TestMalformedRefused(t *testing.T) {
	dir := filepath.Join("testdata", "malformed")
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range malformedFiles() {
		t.Run(m.name, func(t *testing.T) {
			b := m.build()
			path := filepath.Join(dir, m.name+".gguf")
			if *update {
				if err := os.WriteFile(path, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			// The committed file is what a reviewer can feed to other
			// readers; it must be exactly what the description builds.
			committed, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestMalformedRefused -update)", err)
			}
			if !bytes.Equal(committed, b) {
				t.Fatalf("%s differs from its description (run with -update)", path)
			}
			lim := DefaultLimits()
			if tight := tightLimits[m.name]; tight != nil {
				tight(&lim)
			}
			_, err = Parse(bytes.NewReader(b), int64(len(b)), lim)
			var fe *Error
			if !errors.As(err, &fe) {
				t.Fatalf("want a *gguf.Error with %s, got %v", m.reason, err)
			}
			if fe.Reason != m.reason {
				t.Fatalf("reason %s, want %s (%v)", fe.Reason, m.reason, err)
			}
			if m.offset >= 0 && fe.Offset != m.offset {
				t.Errorf("offset %d, want %d (%v)", fe.Offset, m.offset, err)
			}
			if fe.Offset < 0 || fe.Offset > int64(len(b)) {
				t.Errorf("offset %d outside the %d-byte file", fe.Offset, len(b))
			}
			if !strings.Contains(fe.Msg, m.mention) {
				t.Errorf("message %q does not mention %q", fe.Msg, m.mention)
			}
		})
	}
}

// Every committed malformed file has a description (none is left over).
func TestMalformedDirHasNoStrays(t *testing.T) {
	names := map[string]bool{}
	for _, m := range malformedFiles() {
		names[m.name+".gguf"] = true
	}
	ents, err := os.ReadDir(filepath.Join("testdata", "malformed"))
	if err != nil {
		t.Fatal(err)
	}
	var stray []string
	for _, e := range ents {
		if !names[e.Name()] {
			stray = append(stray, e.Name())
		}
	}
	sort.Strings(stray)
	if len(stray) > 0 {
		t.Fatalf("files without a description: %v", stray)
	}
}

// A file that lies about its counts or lengths costs the parser no more
// memory than its real size: nothing is allocated from a declared number.
func TestHostileFilesAllocateLittle(t *testing.T) {
	for _, m := range malformedFiles() {
		b := m.build()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, _ = parseBytes(b)
		runtime.ReadMemStats(&after)
		// The reader buffer (64 KiB), the small model's keys and names,
		// and the error: well under 1 MiB whatever the file declares.
		if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
			t.Errorf("%s: parsing allocated %d bytes", m.name, got)
		}
	}
}

// A large valid file's metadata costs memory in proportion to what is
// kept (names, keys, short values), not to its arrays: a 200k-token
// vocabulary is checked and skipped.
func TestBigVocabularyAllocation(t *testing.T) {
	toks := make([]string, 200000)
	for i := range toks {
		toks[i] = strings.Repeat("t", 1+i%17)
	}
	f := gt.Small()
	f.KV[8].Value = gt.Strs(toks...)
	b := f.Bytes()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	got, err := parseBytes(b)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := got.Get("tokenizer.ggml.tokens"); v.Len != 200000 {
		t.Fatalf("tokens %+v", v)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Fatalf("parsing a %d-byte header allocated %d bytes", len(b), n)
	}
}

func TestErrorIs(t *testing.T) {
	_, err := parseBytes([]byte("nope"))
	if !errors.Is(err, &Error{Reason: ReasonBadMagic}) {
		t.Fatalf("%v", err)
	}
}

// Every reason the reader can give has a malformed file that earns it.
func TestEveryReasonHasAFile(t *testing.T) {
	seen := map[Reason]bool{}
	for _, m := range malformedFiles() {
		seen[m.reason] = true
	}
	for _, r := range Reasons() {
		if !seen[r] {
			t.Errorf("no malformed file is refused with %s", r)
		}
	}
}

// Real keys: llama.cpp's architecture names carry '-' and indexes digits.
func TestRealKeyNamesAccepted(t *testing.T) {
	f := gt.Small()
	f.KV = append(f.KV, gt.KV{Key: "command-r.context_length", Value: gt.U32(8)}, gt.KV{Key: "gpt-oss.attention.head_count", Value: gt.U32(8)},
		gt.KV{Key: "general.base_model.0.name", Value: gt.Str("x")}, gt.KV{Key: "tokenizer.chat_template.tool_use", Value: gt.Str("t")})
	if _, err := parseBytes(f.Bytes()); err != nil {
		t.Fatal(err)
	}
}

// TestReadsWhatGGMLReads: what ggml v0.5.0 accepts and an earlier reading
// refused: a tensor with n_dims = 0 (a scalar) and the types 40 to 42.
func TestReadsWhatGGMLReads(t *testing.T) {
	f := gt.Small()
	f.Tensors = append(f.Tensors,
		gt.Tensor{Name: "scalar", NDims: 0, Dims: nil, Type: gt.GGMLF32, Bytes: 4},
		gt.Tensor{Name: "nvfp4", Dims: []uint64{64}, Type: 40, Bytes: 36},
		gt.Tensor{Name: "q1_0", Dims: []uint64{128}, Type: 41, Bytes: 18},
		gt.Tensor{Name: "q2_0", Dims: []uint64{64}, Type: 42, Bytes: 18})
	got, err := parseBytes(f.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	n := len(got.Tensors)
	if got.Tensors[n-4].Elements != 1 || got.Tensors[n-4].Bytes != 4 || got.Tensors[n-1].Type.String() != "Q2_0" {
		t.Fatalf("%+v", got.Tensors[n-4:])
	}
}

// TestHeldMetadataIsBounded: beyond HeldKV pairs, pairs are checked and
// counted but not held, keys are held cut, and the summary's own keys are
// held wherever they are.
func TestHeldMetadataIsBounded(t *testing.T) {
	f := &gt.File{}
	for i := 0; i < HeldKV+100; i++ {
		f.KV = append(f.KV, gt.KV{Key: fmt.Sprintf("pad.k%d_%s", i, strings.Repeat("x", 300)), Value: gt.U8(1)})
	}
	f.KV = append(f.KV, gt.KV{Key: "general.architecture", Value: gt.Str("llama")})
	got, err := parseBytes(f.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if got.KVCount != HeldKV+101 || len(got.KV) != HeldKV+1 {
		t.Fatalf("count %d, held %d", got.KVCount, len(got.KV))
	}
	if v, ok := got.Get("general.architecture"); !ok || v.Str != "llama" {
		t.Fatal("the architecture after the held pairs was not kept")
	}
	if k := got.KV[0].Key; len(k) > HeldKeyBytes+len("…") {
		t.Fatalf("a key held whole: %d bytes", len(k))
	}
	// A duplicate far past the held pairs is still found.
	f.KV = append(f.KV, gt.KV{Key: f.KV[10].Key, Value: gt.U8(2)})
	if _, err := parseBytes(f.Bytes()); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("duplicate past the held pairs: %v", err)
	}
}
