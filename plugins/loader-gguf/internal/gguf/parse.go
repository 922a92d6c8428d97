// Package gguf reads the metadata of a GGUF model file (ggml's
// docs/gguf.md) and refuses, with the reason and the byte offset, any file
// that does not follow the format exactly, and every file ggml's own reader
// (gguf_init_from_file of ggml v0.5.0, as llama.cpp and the
// @node-llama-cpp/linux-x64 3.22.1 package ship it) refuses: where the two
// could read one file differently (a key with a NUL that ggml compares as a
// C string, tensors placed out of the order ggml reads them in), the file
// is refused, so that what this reader reports is what ggml loads. It never trusts a length or a
// count from the file: each is checked against a configured cap and against
// the bytes the file has left before anything is allocated or looped over,
// and every size is computed with overflow checks. Tensor data is not read;
// its placement is checked against the file size.
package gguf

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"unicode/utf8"
)

// Limits caps what a file may declare. A file over a cap is refused before
// the parser allocates for it.
type Limits struct {
	MaxTensors uint64
	MaxKV      uint64
	// MaxStringBytes caps one string value (keys are capped at 65535 bytes
	// by the format, tensor names at 63 by ggml).
	MaxStringBytes uint64
	MaxArrayLen    uint64
	// MaxArrayDepth is how deep arrays may nest: 1 allows no array of
	// arrays. ggml refuses arrays of arrays, so more than 1 is refused
	// anyway, with that reason.
	MaxArrayDepth int
	// MaxMetadataBytes caps the header, metadata and tensor infos together.
	MaxMetadataBytes uint64
}

// DefaultLimits fit every public model seen so far with a wide margin: the
// largest vocabularies hold about 260k tokens and 500k merges, the largest
// models a few thousand tensors.
func DefaultLimits() Limits {
	return Limits{
		MaxTensors:       1 << 16,
		MaxKV:            1 << 16,
		MaxStringBytes:   1 << 20,
		MaxArrayLen:      1 << 24,
		MaxArrayDepth:    1,
		MaxMetadataBytes: 1 << 30,
	}
}

// Format limits from the specification and ggml.
const (
	MaxKeyBytes        = 65535
	MaxTensorNameBytes = 63 // GGML_MAX_NAME (64) less the NUL
	MaxDims            = 4  // GGML_MAX_DIMS
	DefaultAlignment   = 32
	magic              = "GGUF"
	// keptStringBytes of a string value are kept for the summary; longer
	// values are measured, not held.
	keptStringBytes = 512
	// HeldKV pairs are held for the summary, the first ones in the file,
	// with their keys cut to HeldKeyBytes; the rest are checked and
	// counted, not held (the summary's own keys are always held), so the
	// reader's memory does not grow with the file's metadata.
	HeldKV       = 4096
	HeldKeyBytes = 256
	// minTensorInfo is the smallest tensor info: a 1-byte name with its
	// length, n_dims, one dimension, the type and the offset.
	minTensorInfo = 8 + 1 + 4 + 8 + 4 + 8
	// minKV is the smallest metadata pair: a 1-byte key, the value type,
	// a 1-byte value.
	minKV = 8 + 1 + 4 + 1
)

// Value is a metadata value. Scalars hold their value; a string holds its
// first bytes and its length; an array its element type and length (its
// elements are checked and skipped, not kept).
type Value struct {
	Type ValueType
	Uint uint64  // u8, u16, u32, u64, bool (0/1)
	Int  int64   // i8, i16, i32, i64
	Flt  float64 // f32, f64
	Str  string  // string: the first keptStringBytes bytes
	Len  uint64  // string: its length in bytes; array: its element count
	Elem ValueType
}

// KV is one metadata pair.
type KV struct {
	Key    string
	Value  Value
	Offset int64 // of the key
}

// Tensor is one tensor info, checked.
type Tensor struct {
	Name     string
	Dims     []uint64
	Type     TensorType
	Offset   uint64 // in the data section
	Elements uint64
	Bytes    uint64
	// InfoOffset is where the tensor's info starts in the file.
	InfoOffset int64
}

// File is the checked metadata of a GGUF file.
type File struct {
	Version uint32
	// KV holds the first HeldKV pairs and every pair the summary reads
	// (general.*, *.context_length, tokenizer.chat_template*); KVCount is
	// how many the file has.
	KV         []KV
	KVCount    uint64
	Tensors    []Tensor
	Alignment  uint64
	DataOffset uint64 // start of the tensor data section
	Size       uint64 // of the whole file
	// TensorBytes and Parameters sum the tensors.
	TensorBytes, Parameters uint64
	// MetadataBytes is how much of the file the parser read.
	MetadataBytes uint64
}

// Get returns the value of key.
func (f *File) Get(key string) (Value, bool) {
	for i := range f.KV {
		if f.KV[i].Key == key {
			return f.KV[i].Value, true
		}
	}
	return Value{}, false
}

// Parse reads the metadata of a file of size bytes from r, which must be
// positioned at the file's start. It reads only the metadata.
func Parse(r io.Reader, size int64, lim Limits) (*File, error) {
	if size < 0 {
		return nil, fmt.Errorf("gguf: negative file size %d", size)
	}
	p := &parser{r: bufio.NewReaderSize(r, 64<<10), size: uint64(size), lim: lim}
	f, err := p.file()
	if err != nil {
		return nil, err
	}
	return f, nil
}

type parser struct {
	r    *bufio.Reader
	off  uint64
	size uint64
	lim  Limits
	// digests of the keys seen, for the uniqueness check without holding
	// every key
	keys map[[16]byte]struct{}
}

func (p *parser) fail(at uint64, reason Reason, format string, args ...any) error {
	return &Error{Offset: int64(at), Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// left is how many bytes of the file follow the read position.
func (p *parser) left() uint64 { return p.size - p.off }

// need refuses to go on unless n more bytes are in the file and in the
// metadata cap.
func (p *parser) need(n uint64, what string) error {
	if n > p.left() {
		return p.fail(p.off, ReasonTruncated, "%s needs %d bytes but the file has %d left", what, n, p.left())
	}
	if p.off+n > p.lim.MaxMetadataBytes {
		return p.fail(p.off, ReasonMetadataTooLarge, "%s ends past the metadata cap of %d bytes", what, p.lim.MaxMetadataBytes)
	}
	return nil
}

// read returns the next n bytes (n <= the buffer size), valid until the
// next read.
func (p *parser) read(n uint64, what string) ([]byte, error) {
	if err := p.need(n, what); err != nil {
		return nil, err
	}
	b, err := p.r.Peek(int(n))
	if err != nil {
		return nil, p.ioError(err, what)
	}
	p.r.Discard(int(n)) //nolint:errcheck // Peek just proved the bytes are buffered
	p.off += n
	return b, nil
}

// skip moves past n bytes that need() has allowed.
func (p *parser) skip(n uint64, what string) error {
	if err := p.need(n, what); err != nil {
		return err
	}
	for n > 0 {
		step := min(n, math.MaxInt32)
		d, err := p.r.Discard(int(step))
		p.off += uint64(d)
		n -= uint64(d)
		if err != nil {
			return p.ioError(err, what)
		}
	}
	return nil
}

// ioError reports a reader failure. A file that ends before its measured
// size changed under us: that is a truncation at this offset, not an I/O
// fault.
func (p *parser) ioError(err error, what string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return p.fail(p.off, ReasonTruncated, "the file ended while reading %s (it shrank while being read?)", what)
	}
	return fmt.Errorf("gguf: read %s at byte %d: %w", what, p.off, err)
}

func (p *parser) u32(what string) (uint32, error) {
	b, err := p.read(4, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (p *parser) u64(what string) (uint64, error) {
	b, err := p.read(8, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

// strLen reads a string's length, refusing one over max.
func (p *parser) strLen(what string, max uint64, tooLong Reason) (uint64, error) {
	at := p.off
	n, err := p.u64(what)
	if err != nil {
		return 0, err
	}
	if n > max {
		return n, p.fail(at, tooLong, "%s is %d bytes long; the limit is %d", what, n, max)
	}
	return n, nil
}

// str reads a string of at most max bytes, keeping up to keep of them.
func (p *parser) str(what string, max, keep uint64, tooLong Reason) (s string, n uint64, err error) {
	if n, err = p.strLen(what, max, tooLong); err != nil {
		return "", n, err
	}
	if err := p.need(n, what); err != nil {
		return "", n, err
	}
	k := min(n, keep)
	if k > 0 {
		b, err := p.read(k, what)
		if err != nil {
			return "", n, err
		}
		s = string(b)
	}
	return s, n, p.skip(n-k, what)
}

// strNoNUL reads a string value (not an array element), refusing a NUL
// byte anywhere in it: llama.cpp reads such values (the architecture, the
// chat template) as C strings, and would use less than is reported here.
func (p *parser) strNoNUL(what string, max, keep uint64) (s string, n uint64, err error) {
	if n, err = p.strLen(what, max, ReasonStringTooLong); err != nil {
		return "", n, err
	}
	if err := p.need(n, what); err != nil {
		return "", n, err
	}
	for left := n; left > 0; {
		k := min(left, 32<<10)
		start := p.off
		b, err := p.read(k, what)
		if err != nil {
			return "", n, err
		}
		if i := bytes.IndexByte(b, 0); i >= 0 {
			return "", n, p.fail(start+uint64(i), ReasonNULInString, "%s holds a NUL byte at byte %d: ggml's users read it as a C string and would see only what comes before", what, n-left+uint64(i))
		}
		if uint64(len(s)) < keep {
			s += string(b[:min(uint64(len(b)), keep-uint64(len(s)))])
		}
		left -= k
	}
	return s, n, nil
}

func (p *parser) file() (*File, error) {
	b, err := p.read(4, "the magic")
	if err != nil {
		return nil, err
	}
	if string(b) != magic {
		return nil, p.fail(0, ReasonBadMagic, "not a GGUF file: it starts with %q, not %q", printable(b), magic)
	}
	f := &File{Size: p.size, Alignment: DefaultAlignment}
	if f.Version, err = p.u32("the version"); err != nil {
		return nil, err
	}
	switch v := f.Version; {
	case v == 2 || v == 3:
	case v == 1:
		return nil, p.fail(4, ReasonUnsupportedVersion, "GGUF version 1 (32-bit counts, 2023) is not supported; convert the file with a current llama.cpp")
	case v&0xffff == 0 && bits.ReverseBytes32(v) >= 1 && bits.ReverseBytes32(v) <= 3:
		return nil, p.fail(4, ReasonByteSwapped, "the file is big-endian (version reads %#x little-endian, %d byte-swapped); only little-endian files are supported", v, bits.ReverseBytes32(v))
	default:
		return nil, p.fail(4, ReasonUnsupportedVersion, "GGUF version %d is not supported (2 and 3 are)", v)
	}
	nTensors, err := p.u64("the tensor count")
	if err != nil {
		return nil, err
	}
	nKV, err := p.u64("the metadata count")
	if err != nil {
		return nil, err
	}
	if nTensors > p.lim.MaxTensors {
		return nil, p.fail(8, ReasonTooManyTensors, "the header declares %d tensors; the limit is %d", nTensors, p.lim.MaxTensors)
	}
	if nKV > p.lim.MaxKV {
		return nil, p.fail(16, ReasonTooManyKV, "the header declares %d metadata pairs; the limit is %d", nKV, p.lim.MaxKV)
	}
	// Both counts are capped, so the product cannot overflow.
	if least := nTensors*minTensorInfo + nKV*minKV; least > p.left() {
		return nil, p.fail(8, ReasonTruncated, "the header declares %d tensors and %d metadata pairs, which need at least %d bytes; the file has %d left", nTensors, nKV, least, p.left())
	}

	p.keys = make(map[[16]byte]struct{}, nKV)
	f.KV = make([]KV, 0, min(nKV, HeldKV))
	f.KVCount = nKV
	for i := uint64(0); i < nKV; i++ {
		kv, summary, err := p.kv(i)
		if err != nil {
			return nil, err
		}
		if kv.Key == "general.alignment" {
			if kv.Value.Type != TypeUint32 {
				return nil, p.fail(uint64(kv.Offset), ReasonBadAlignment, "general.alignment must be a u32, not %s", kv.Value.Type)
			}
			if a := kv.Value.Uint; a == 0 || a&(a-1) != 0 {
				return nil, p.fail(uint64(kv.Offset), ReasonBadAlignment, "general.alignment %d is not a power of two", a)
			}
			f.Alignment = kv.Value.Uint
		}
		if uint64(len(f.KV)) < HeldKV || summary {
			f.KV = append(f.KV, kv)
		}
	}

	f.Tensors = make([]Tensor, 0, nTensors)
	names := make(map[string]struct{}, nTensors)
	for i := uint64(0); i < nTensors; i++ {
		t, err := p.tensor(i, names)
		if err != nil {
			return nil, err
		}
		f.Tensors = append(f.Tensors, t)
	}
	f.MetadataBytes = p.off
	return f, p.place(f)
}

// kv reads metadata pair i. The key is checked (form, duplicates) on the
// bytes in the read buffer, and kept as a string only up to HeldKeyBytes:
// a file of thousands of 64 KB keys leaves no garbage of their size behind
// for the collector to catch up with. summary says whether the summary
// reads the key (summaryKey, on the whole key).
func (p *parser) kv(i uint64) (_ KV, summary bool, _ error) {
	at := p.off
	raw, err := p.keyBytes()
	if err != nil {
		return KV{}, false, in(err, "metadata pair %d", i)
	}
	if len(raw) == 0 {
		return KV{}, false, p.fail(at, ReasonEmptyKey, "the key of metadata pair %d is empty", i)
	}
	if bad, why := badKey(raw); bad >= 0 {
		return KV{}, false, p.fail(at+8+uint64(bad), ReasonBadKey, "the key of metadata pair %d, %q, %s (keys are ASCII lower_snake_case words separated by dots)", i, printable(raw[:min(len(raw), 80)]), why)
	}
	sum := sha256.Sum256(raw)
	summary = summaryKey(raw)
	key := string(raw[:min(len(raw), HeldKeyBytes)])
	if len(raw) > HeldKeyBytes {
		key += "…"
	}
	// raw is not valid past here: the next read reuses the buffer.
	var id [16]byte
	copy(id[:], sum[:])
	if _, dup := p.keys[id]; dup {
		return KV{}, false, p.fail(at, ReasonDuplicateKey, "metadata key %q appears twice", key)
	}
	p.keys[id] = struct{}{}
	typ, err := p.u32("the value type")
	if err == nil {
		var v Value
		if v, err = p.value(ValueType(typ), 0); err == nil {
			return KV{Key: key, Value: v, Offset: int64(at)}, summary, nil
		}
	}
	return KV{}, false, in(err, "metadata %q", key)
}

// keyBytes reads a key: its length, then its bytes, valid until the next
// read (a key fits the read buffer: MaxKeyBytes is under its size).
func (p *parser) keyBytes() ([]byte, error) {
	n, err := p.strLen("the key", MaxKeyBytes, ReasonStringTooLong)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, nil
	}
	return p.read(n, "the key")
}

// value reads one value of type t; depth counts the arrays around it.
func (p *parser) value(t ValueType, depth int) (Value, error) {
	at := p.off
	if !t.known() {
		return Value{}, p.fail(at-4, ReasonUnknownValueType, "the value has unknown type %d", uint32(t))
	}
	v := Value{Type: t}
	switch t {
	case TypeString:
		s, n, err := p.strNoNUL("the string value", p.lim.MaxStringBytes, keptStringBytes)
		v.Str, v.Len = s, n
		return v, err
	case TypeArray:
		return p.array(depth + 1)
	}
	b, err := p.read(fixedSize[t], "the value")
	if err != nil {
		return v, err
	}
	switch t {
	case TypeUint8:
		v.Uint = uint64(b[0])
	case TypeInt8:
		v.Int = int64(int8(b[0]))
	case TypeUint16:
		v.Uint = uint64(binary.LittleEndian.Uint16(b))
	case TypeInt16:
		v.Int = int64(int16(binary.LittleEndian.Uint16(b)))
	case TypeUint32:
		v.Uint = uint64(binary.LittleEndian.Uint32(b))
	case TypeInt32:
		v.Int = int64(int32(binary.LittleEndian.Uint32(b)))
	case TypeUint64:
		v.Uint = binary.LittleEndian.Uint64(b)
	case TypeInt64:
		v.Int = int64(binary.LittleEndian.Uint64(b))
	case TypeFloat32:
		v.Flt = float64(math.Float32frombits(binary.LittleEndian.Uint32(b)))
	case TypeFloat64:
		v.Flt = math.Float64frombits(binary.LittleEndian.Uint64(b))
	case TypeBool:
		if b[0] > 1 {
			return v, p.fail(at, ReasonBadBool, "the bool value is %d; only 0 and 1 are allowed", b[0])
		}
		v.Uint = uint64(b[0])
	}
	return v, nil
}

func (p *parser) array(depth int) (Value, error) {
	at := p.off
	if depth > 1 {
		return Value{}, p.fail(at, ReasonArrayTooDeep, "an array of arrays: ggml refuses them")
	}
	if depth > p.lim.MaxArrayDepth {
		return Value{}, p.fail(at, ReasonArrayTooDeep, "the array nests %d deep; the limit is %d", depth, p.lim.MaxArrayDepth)
	}
	et, err := p.u32("the array's element type")
	if err != nil {
		return Value{}, err
	}
	elem := ValueType(et)
	if !elem.known() {
		return Value{}, p.fail(at, ReasonUnknownValueType, "the array has unknown element type %d", et)
	}
	if elem == TypeArray {
		// ggml refuses the element type itself ("invalid GGUF type 9"),
		// whatever the count: an empty array of arrays too.
		return Value{}, p.fail(at, ReasonArrayTooDeep, "an array of arrays (element type %d): ggml refuses them, even empty", et)
	}
	n, err := p.u64("the array's length")
	if err != nil {
		return Value{}, err
	}
	v := Value{Type: TypeArray, Elem: elem, Len: n}
	if n > p.lim.MaxArrayLen {
		return v, p.fail(at+4, ReasonArrayTooLong, "the array has %d elements; the limit is %d", n, p.lim.MaxArrayLen)
	}
	// n is capped, so n*min cannot overflow.
	if least := n * elem.minEncoded(); least > p.left() {
		return v, p.fail(at+4, ReasonTruncated, "the array declares %d %s elements, at least %d bytes; the file has %d left", n, elem, least, p.left())
	}
	switch elem {
	case TypeString:
		for i := uint64(0); i < n; i++ {
			if _, _, err := p.str("a string in the array", p.lim.MaxStringBytes, 0, ReasonStringTooLong); err != nil {
				return v, in(err, "element %d", i)
			}
		}
	case TypeBool:
		for left := n; left > 0; {
			k := min(left, 4096)
			start := p.off
			b, err := p.read(k, "the bool array")
			if err != nil {
				return v, err
			}
			for j, c := range b {
				if c > 1 {
					return v, p.fail(start+uint64(j), ReasonBadBool, "a bool in the array is %d; only 0 and 1 are allowed", c)
				}
			}
			left -= k
		}
	default:
		if err := p.skip(n*fixedSize[elem], "the array"); err != nil {
			return v, err
		}
	}
	return v, nil
}

func (p *parser) tensor(i uint64, names map[string]struct{}) (Tensor, error) {
	at := p.off
	t := Tensor{InfoOffset: int64(at)}
	name, n, err := p.str("the name", MaxTensorNameBytes, MaxTensorNameBytes, ReasonTensorNameTooLong)
	if err != nil {
		return t, in(err, "tensor %d", i)
	}
	switch {
	case n == 0:
		return t, p.fail(at, ReasonBadTensorName, "tensor %d has an empty name", i)
	case !utf8.ValidString(name):
		return t, p.fail(at, ReasonInvalidUTF8, "the name of tensor %d is not valid UTF-8: %q", i, name)
	}
	for j := 0; j < len(name); j++ {
		// ggml keeps a name as a C string: a NUL would cut it (and hide a
		// duplicate), a control byte would reach every log.
		if c := name[j]; c < 0x20 || c == 0x7f {
			return t, p.fail(at+8+uint64(j), ReasonBadTensorName, "the name of tensor %d holds the control byte %#02x at byte %d", i, c, j)
		}
	}
	if _, dup := names[name]; dup {
		return t, p.fail(at, ReasonDuplicateTensor, "tensor name %q appears twice", name)
	}
	names[name] = struct{}{}
	t.Name = name
	if err := p.tensorShape(&t); err != nil {
		return t, in(err, "tensor %q", name)
	}
	return t, nil
}

// tensorShape reads and checks the dimensions, type and offset of t.
func (p *parser) tensorShape(t *Tensor) error {
	dimsAt := p.off
	nd, err := p.u32("n_dims")
	if err != nil {
		return err
	}
	if nd > MaxDims {
		return p.fail(dimsAt, ReasonBadDims, "%d dimensions; at most %d are allowed", nd, MaxDims)
	}
	t.Dims = make([]uint64, nd)
	for d := range t.Dims {
		dAt := p.off
		if t.Dims[d], err = p.u64("a dimension"); err != nil {
			return err
		}
		if t.Dims[d] > math.MaxInt64 {
			return p.fail(dAt, ReasonBadDims, "dimension %d is %d, beyond ggml's signed 64-bit range", d, t.Dims[d])
		}
	}
	typeAt := p.off
	typ, err := p.u32("the type")
	if err != nil {
		return err
	}
	t.Type = TensorType(typ)
	info, ok := t.Type.info()
	switch {
	case !ok:
		return p.fail(typeAt, ReasonUnknownTensorType, "unknown ggml type %d", typ)
	case info.size == 0:
		return p.fail(typeAt, ReasonRemovedTensorType, "type %s (%d), which ggml removed; re-quantise the model", info.name, typ)
	}
	// ggml fills the dimensions a tensor does not list with 1 (n_dims = 0
	// is a scalar) and refuses an element count its int64 check cannot
	// prove representable. ne[1..3] = 0 (a tensor of no elements) ggml
	// v0.5.0 loads; this loader refuses it: no model holds one, and the
	// overflow check below divides by those dimensions.
	var ne [MaxDims]uint64
	for j := range ne {
		ne[j] = 1
		if j < len(t.Dims) {
			ne[j] = t.Dims[j]
		}
	}
	for j := 1; j < MaxDims; j++ {
		if ne[j] == 0 {
			return p.fail(dimsAt, ReasonBadDims, "ne[%d] = 0: a tensor of no elements, which this loader refuses (ggml loads it; no model holds one)", j)
		}
	}
	if math.MaxInt64/ne[1] <= ne[0] || math.MaxInt64/ne[2] <= ne[0]*ne[1] || math.MaxInt64/ne[3] <= ne[0]*ne[1]*ne[2] {
		return p.fail(dimsAt, ReasonSizeOverflow, "dimensions %v overflow ggml's element count", t.Dims)
	}
	if ne[0]%info.block != 0 {
		return p.fail(dimsAt, ReasonBlockMisaligned, "ne[0] = %d is not a multiple of the %s block size %d", ne[0], info.name, info.block)
	}
	if t.Elements, t.Bytes, ok = sizeOf(ne[:], info); !ok {
		return p.fail(dimsAt, ReasonSizeOverflow, "dimensions %v overflow its element count or byte size", t.Dims)
	}
	t.Offset, err = p.u64("the offset")
	return err
}

// sizeOf computes the element count and byte size of a tensor, refusing
// anything past int64 (ggml's types) as an overflow.
func sizeOf(dims []uint64, info tensorTypeInfo) (elements, nbytes uint64, ok bool) {
	mul := func(a, b uint64) (uint64, bool) {
		hi, lo := bits.Mul64(a, b)
		return lo, hi == 0 && lo <= math.MaxInt64
	}
	elements, nbytes = 1, info.size
	for i, d := range dims {
		if elements, ok = mul(elements, d); !ok {
			return 0, 0, false
		}
		if i == 0 {
			d /= info.block // ne[0] counts elements; rows are stored in blocks
		}
		if nbytes, ok = mul(nbytes, d); !ok {
			return 0, 0, false
		}
	}
	return elements, nbytes, true
}

// place checks where the tensor data lies: the data section starts at the
// next multiple of the alignment, and each tensor is aligned, inside the
// file and apart from every other.
func (p *parser) place(f *File) error {
	start, ok := alignUp(p.off, f.Alignment)
	if !ok {
		return p.fail(p.off, ReasonSizeOverflow, "the data section start overflows")
	}
	if len(f.Tensors) == 0 {
		f.DataOffset = p.off // ggml pads to the data section only when there is one
		return nil
	}
	if start > p.size {
		return p.fail(p.off, ReasonTruncated, "the data section would start at byte %d, past the end of the %d-byte file", start, p.size)
	}
	f.DataOffset = start
	// ggml reads the tensors' data in the order they are listed, each
	// right after the one before, padded to the alignment: an offset out
	// of that order, or a gap, and ggml refuses the file.
	var expect uint64
	for i := range f.Tensors {
		t := &f.Tensors[i]
		if t.Offset != expect {
			return p.fail(uint64(t.InfoOffset), ReasonTensorOutOfPlace, "tensor %q: offset %d, but ggml expects %d (tensors lie in listed order, each padded to %d bytes)", t.Name, t.Offset, expect, f.Alignment)
		}
		end, c1 := bits.Add64(start, t.Offset, 0)
		end, c2 := bits.Add64(end, t.Bytes, 0)
		if c1 != 0 || c2 != 0 {
			return p.fail(uint64(t.InfoOffset), ReasonSizeOverflow, "tensor %q: data start %d + offset %d + size %d overflows", t.Name, start, t.Offset, t.Bytes)
		}
		if end > p.size {
			return p.fail(uint64(t.InfoOffset), ReasonTensorOutOfBounds, "tensor %q: its data [%d, %d) ends past the end of the %d-byte file", t.Name, start+t.Offset, end, p.size)
		}
		padded, ok := alignUp(t.Bytes, f.Alignment)
		if expect, c1 = bits.Add64(expect, padded, 0); !ok || c1 != 0 {
			return p.fail(uint64(t.InfoOffset), ReasonSizeOverflow, "tensor %q: the data section's size overflows", t.Name)
		}
		f.TensorBytes, c1 = bits.Add64(f.TensorBytes, t.Bytes, 0)
		f.Parameters, c2 = bits.Add64(f.Parameters, t.Elements, 0)
		if c1 != 0 || c2 != 0 {
			return p.fail(uint64(t.InfoOffset), ReasonSizeOverflow, "the tensors' total size overflows")
		}
	}
	return nil
}

// badKey returns where key breaks the specification's form (ASCII
// lower_snake_case words separated by dots) and why, or -1. Digits are
// allowed (general.base_model.0.name), and so is '-': llama.cpp's own
// architecture names carry it (command-r.context_length,
// gpt-oss.attention.head_count).
func badKey(key []byte) (int, string) {
	word := 0
	for i := 0; i < len(key); i++ {
		switch c := key[i]; {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_', c == '-':
			word++
		case c == '.':
			if word == 0 {
				return i, "has an empty word"
			}
			word = 0
		case c == 0:
			return i, "holds a NUL byte (ggml compares keys as C strings: another key would be read)"
		case c < 0x20 || c == 0x7f:
			return i, fmt.Sprintf("holds the control byte %#02x", c)
		case c >= 0x80:
			return i, "holds a byte that is not ASCII"
		default:
			return i, fmt.Sprintf("holds %q", c)
		}
	}
	if word == 0 {
		return len(key) - 1, "ends with a dot"
	}
	return -1, ""
}

// summaryKey says whether the summary reads key, so that it is held
// wherever it is in the file.
func summaryKey(key []byte) bool {
	return bytes.HasPrefix(key, []byte("general.")) || bytes.HasSuffix(key, []byte(".context_length")) || bytes.HasPrefix(key, []byte("tokenizer.chat_template"))
}

func alignUp(n, a uint64) (uint64, bool) {
	r, c := bits.Add64(n, a-1, 0)
	return r / a * a, c == 0
}

// in adds where a refusal happened to its message, formatting only on
// failure so that the parse of a valid file formats nothing.
func in(err error, format string, args ...any) error {
	var fe *Error
	if errors.As(err, &fe) {
		fe.Msg = fmt.Sprintf(format, args...) + ": " + fe.Msg
		return fe
	}
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), err)
}

// printable shows bytes from a file in an error message without passing
// control characters through.
func printable(b []byte) string {
	out := make([]rune, 0, len(b))
	for _, c := range b {
		if c < 0x20 || c >= 0x7f {
			out = append(out, '.')
		} else {
			out = append(out, rune(c))
		}
	}
	return string(out)
}
