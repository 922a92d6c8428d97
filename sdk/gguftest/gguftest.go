// Package gguftest writes GGUF files byte by byte to the format's
// specification (ggml's docs/gguf.md), for tests and benchmarks of model
// loaders. Every field can be overridden, so that one valid description
// yields each malformed variant a hardened reader must refuse.
//
// Layout written (all integers little-endian):
//
//	magic "GGUF" | version u32 | tensor_count u64 | kv_count u64
//	kv_count x (key string | value_type u32 | value)
//	tensor_count x (name string | n_dims u32 | dims u64 x n_dims | ggml_type u32 | offset u64)
//	padding to the alignment | tensor data, each tensor padded to the alignment
//
// where a string is its byte length as u64 followed by the bytes, and an
// array value is elem_type u32 | count u64 | the elements.
package gguftest

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
)

// ValueType is a GGUF metadata value type.
type ValueType uint32

// The metadata value types of the specification.
const (
	ValUint8 ValueType = iota
	ValInt8
	ValUint16
	ValInt16
	ValUint32
	ValInt32
	ValFloat32
	ValBool
	ValString
	ValArray
	ValUint64
	ValInt64
	ValFloat64
)

// GGML tensor types the writer knows the sizes of; a test that needs
// another sets Tensor.Bytes itself.
const (
	GGMLF32  uint32 = 0
	GGMLF16  uint32 = 1
	GGMLQ4_0 uint32 = 2
	GGMLQ8_0 uint32 = 8
	GGMLQ4_K uint32 = 12
	GGMLQ6_K uint32 = 14
	GGMLBF16 uint32 = 30
)

// DefaultAlignment is the specification's alignment when the file has no
// general.alignment.
const DefaultAlignment = 32

var knownTypes = map[uint32]struct{ block, size uint64 }{
	GGMLF32: {1, 4}, GGMLF16: {1, 2}, GGMLQ4_0: {32, 18}, GGMLQ8_0: {32, 34},
	GGMLQ4_K: {256, 144}, GGMLQ6_K: {256, 210}, GGMLBF16: {1, 2},
}

// Value is one metadata value. Build it with the constructors below; Raw
// writes any bytes under any type id, for hostile files.
type Value struct {
	Type ValueType
	enc  func(b *Buf)
}

func scalar(t ValueType, enc func(b *Buf)) Value { return Value{Type: t, enc: enc} }

func U8(v uint8) Value    { return scalar(ValUint8, func(b *Buf) { b.U8(v) }) }
func I8(v int8) Value     { return scalar(ValInt8, func(b *Buf) { b.U8(uint8(v)) }) }
func U16(v uint16) Value  { return scalar(ValUint16, func(b *Buf) { b.U16(v) }) }
func I16(v int16) Value   { return scalar(ValInt16, func(b *Buf) { b.U16(uint16(v)) }) }
func U32(v uint32) Value  { return scalar(ValUint32, func(b *Buf) { b.U32(v) }) }
func I32(v int32) Value   { return scalar(ValInt32, func(b *Buf) { b.U32(uint32(v)) }) }
func U64(v uint64) Value  { return scalar(ValUint64, func(b *Buf) { b.U64(v) }) }
func I64(v int64) Value   { return scalar(ValInt64, func(b *Buf) { b.U64(uint64(v)) }) }
func F32(v float32) Value { return scalar(ValFloat32, func(b *Buf) { b.U32(math.Float32bits(v)) }) }
func F64(v float64) Value { return scalar(ValFloat64, func(b *Buf) { b.U64(math.Float64bits(v)) }) }
func Str(v string) Value  { return scalar(ValString, func(b *Buf) { b.Str(v) }) }
func Bool(v bool) Value {
	return scalar(ValBool, func(b *Buf) {
		if v {
			b.U8(1)
		} else {
			b.U8(0)
		}
	})
}

// Raw is a value of type t whose encoding is exactly raw.
func Raw(t ValueType, raw []byte) Value {
	return scalar(t, func(b *Buf) { b.Bytes(raw) })
}

// Arr is an array of elements of type elem; each item must have that type
// (an Arr of Arr for nested arrays).
func Arr(elem ValueType, items ...Value) Value {
	return Value{Type: ValArray, enc: func(b *Buf) {
		b.U32(uint32(elem))
		b.U64(uint64(len(items)))
		for _, it := range items {
			it.enc(b)
		}
	}}
}

// Strs is an array of strings.
func Strs(items ...string) Value {
	vs := make([]Value, len(items))
	for i, s := range items {
		vs[i] = Str(s)
	}
	return Arr(ValString, vs...)
}

// KV is one metadata key and value.
type KV struct {
	Key   string
	Value Value
}

// Tensor is one tensor info and, unless the file says otherwise, its data.
type Tensor struct {
	Name string
	Dims []uint64
	Type uint32
	// Offset in the data section; nil places the tensor after the
	// previous one, aligned.
	Offset *uint64
	// Bytes of data; 0 computes it from Type and Dims (known types only).
	Bytes uint64
	// NDims overrides the written n_dims (len(Dims) when 0).
	NDims uint32
}

// File describes a GGUF file. The zero value of each override means
// "what the specification says".
type File struct {
	Magic   string // 4 bytes; "" is "GGUF"
	Version uint32 // 0 is 3
	KV      []KV
	Tensors []Tensor
	// Header counts; nil writes len(KV) and len(Tensors).
	TensorCount, KVCount *uint64
	// DataBytes cuts (or extends) the data section; nil writes every
	// tensor's data in full.
	DataBytes *uint64
	// BigEndian writes the header integers byte-swapped, as a big-endian
	// producer would.
	BigEndian bool
}

// Ptr returns a pointer to v, for the override fields.
func Ptr[T any](v T) *T { return &v }

// Alignment is the alignment the file declares (general.alignment as a
// u32) or the default.
func (f *File) Alignment() uint64 {
	for _, kv := range f.KV {
		if kv.Key == "general.alignment" && kv.Value.Type == ValUint32 {
			var b Buf
			kv.Value.enc(&b)
			if a := uint64(binary.LittleEndian.Uint32(b.B)); a != 0 {
				return a
			}
		}
	}
	return DefaultAlignment
}

// TensorBytes is the data size of t as the writer lays it out.
func TensorBytes(t Tensor) uint64 {
	if t.Bytes != 0 {
		return t.Bytes
	}
	k, ok := knownTypes[t.Type]
	if !ok || len(t.Dims) == 0 {
		return 0
	}
	n := t.Dims[0] / k.block * k.size
	for _, d := range t.Dims[1:] {
		n *= d
	}
	return n
}

func alignUp(n, a uint64) uint64 { return (n + a - 1) / a * a }

// layout assigns the offset of every tensor and the length of the data
// section.
func (f *File) layout() (offsets []uint64, dataLen uint64) {
	align := f.Alignment()
	var next uint64
	for _, t := range f.Tensors {
		off := next
		if t.Offset != nil {
			off = *t.Offset
		}
		offsets = append(offsets, off)
		end := alignUp(off+TensorBytes(t), align)
		if end > next {
			next = end
		}
	}
	if f.DataBytes != nil {
		next = *f.DataBytes
	}
	return offsets, next
}

// Header returns everything before the tensor data: header, metadata,
// tensor infos and the padding up to the data section.
func (f *File) Header() []byte {
	var b Buf
	b.big = f.BigEndian
	magic := f.Magic
	if magic == "" {
		magic = "GGUF"
	}
	b.Bytes([]byte(magic))
	v := f.Version
	if v == 0 {
		v = 3
	}
	b.U32(v)
	tc, kc := uint64(len(f.Tensors)), uint64(len(f.KV))
	if f.TensorCount != nil {
		tc = *f.TensorCount
	}
	if f.KVCount != nil {
		kc = *f.KVCount
	}
	b.U64(tc)
	b.U64(kc)
	b.big = false
	for _, kv := range f.KV {
		b.Str(kv.Key)
		b.U32(uint32(kv.Value.Type))
		kv.Value.enc(&b)
	}
	offsets, _ := f.layout()
	for i, t := range f.Tensors {
		b.Str(t.Name)
		n := t.NDims
		if n == 0 {
			n = uint32(len(t.Dims))
		}
		b.U32(n)
		for _, d := range t.Dims {
			b.U64(d)
		}
		b.U32(t.Type)
		b.U64(offsets[i])
	}
	if len(f.Tensors) > 0 || f.DataBytes != nil {
		for uint64(len(b.B))%f.Alignment() != 0 {
			b.U8(0)
		}
	}
	return b.B
}

// DataOffset is where the data section starts.
func (f *File) DataOffset() uint64 { return uint64(len(f.Header())) }

// Size is the length of the whole file.
func (f *File) Size() uint64 {
	_, n := f.layout()
	return f.DataOffset() + n
}

// Bytes is the whole file; for files up to a few MiB.
func (f *File) Bytes() []byte {
	var b bufWriter
	if _, err := f.WriteTo(&b); err != nil {
		panic(err) // writing to memory cannot fail
	}
	return b.b
}

type bufWriter struct{ b []byte }

func (w *bufWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

// WriteTo streams the file; the tensor data is a deterministic pattern
// made on the fly, so files of many GiB cost no memory.
func (f *File) WriteTo(w io.Writer) (int64, error) {
	hdr := f.Header()
	n, err := w.Write(hdr)
	total := int64(n)
	if err != nil {
		return total, err
	}
	_, dataLen := f.layout()
	m, err := writePattern(w, dataLen)
	return total + m, err
}

func writePattern(w io.Writer, n uint64) (int64, error) {
	chunk := make([]byte, 1<<20)
	x := uint64(0x9e3779b97f4a7c15)
	for i := 0; i+8 <= len(chunk); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(chunk[i:], x)
	}
	var total int64
	for i := uint64(0); n > 0; i++ {
		// Vary each MiB so that no two chunks hash alike.
		binary.LittleEndian.PutUint64(chunk, i)
		c := chunk
		if uint64(len(c)) > n {
			c = c[:n]
		}
		m, err := w.Write(c)
		total += int64(m)
		if err != nil {
			return total, err
		}
		n -= uint64(m)
	}
	return total, nil
}

// Write writes the file at path (mode 0600) and returns path.
func (f *File) Write(path string) (string, error) {
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", err
	}
	bw := bufio.NewWriterSize(out, 1<<20)
	if _, err := f.WriteTo(bw); err != nil {
		out.Close()
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		out.Close()
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return path, out.Close()
}

// Buf builds raw little-endian bytes, for files no File can describe.
type Buf struct {
	B   []byte
	big bool
}

func (b *Buf) U8(v uint8) *Buf { b.B = append(b.B, v); return b }
func (b *Buf) order() binary.AppendByteOrder {
	if b.big {
		return binary.BigEndian
	}
	return binary.LittleEndian
}
func (b *Buf) U16(v uint16) *Buf   { b.B = b.order().AppendUint16(b.B, v); return b }
func (b *Buf) U32(v uint32) *Buf   { b.B = b.order().AppendUint32(b.B, v); return b }
func (b *Buf) U64(v uint64) *Buf   { b.B = b.order().AppendUint64(b.B, v); return b }
func (b *Buf) Str(s string) *Buf   { b.U64(uint64(len(s))); b.B = append(b.B, s...); return b }
func (b *Buf) Bytes(p []byte) *Buf { b.B = append(b.B, p...); return b }

// Small is a valid little model: the metadata a llama.cpp conversion
// writes (architecture, name, context length, file type, a tokenizer with
// a chat template) and a few tensors of different types.
func Small() *File {
	return &File{
		KV: []KV{
			{"general.architecture", Str("llama")},
			{"general.name", Str("tiny-test")},
			{"general.file_type", U32(7)}, // MOSTLY_Q8_0
			{"general.alignment", U32(32)},
			{"llama.context_length", U32(4096)},
			{"llama.embedding_length", U32(64)},
			{"llama.rope.freq_base", F32(10000)},
			{"tokenizer.ggml.model", Str("llama")},
			{"tokenizer.ggml.tokens", Strs("<unk>", "<s>", "</s>", "hello")},
			{"tokenizer.ggml.scores", Arr(ValFloat32, F32(0), F32(0), F32(0), F32(-1.5))},
			{"tokenizer.ggml.add_bos_token", Bool(true)},
			{"tokenizer.chat_template", Str("{% for m in messages %}{{ m.content }}{% endfor %}")},
		},
		Tensors: []Tensor{
			{Name: "token_embd.weight", Dims: []uint64{64, 4}, Type: GGMLQ8_0},
			{Name: "blk.0.attn_norm.weight", Dims: []uint64{64}, Type: GGMLF32},
			{Name: "blk.0.ffn_up.weight", Dims: []uint64{256, 2}, Type: GGMLQ4_K},
			{Name: "output.weight", Dims: []uint64{64, 4}, Type: GGMLF16},
		},
	}
}

// Many is a valid file with n tensors and about kv metadata pairs and no
// tensor data beyond the header's promise (the data section is written
// in full, each tensor 32 F32 values).
func Many(tensors, kvs int) *File {
	f := &File{KV: []KV{{"general.architecture", Str("llama")}, {"general.name", Str("many")}}}
	for i := len(f.KV); i < kvs; i++ {
		f.KV = append(f.KV, KV{fmt.Sprintf("test.key.%05d", i), U32(uint32(i))})
	}
	for i := 0; i < tensors; i++ {
		f.Tensors = append(f.Tensors, Tensor{Name: fmt.Sprintf("blk.%d.weight", i), Dims: []uint64{32}, Type: GGMLF32})
	}
	return f
}
