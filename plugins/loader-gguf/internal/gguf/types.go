package gguf

import "fmt"

// ValueType is a metadata value type of the specification.
type ValueType uint32

const (
	TypeUint8 ValueType = iota
	TypeInt8
	TypeUint16
	TypeInt16
	TypeUint32
	TypeInt32
	TypeFloat32
	TypeBool
	TypeString
	TypeArray
	TypeUint64
	TypeInt64
	TypeFloat64
	valueTypeCount
)

var valueTypeNames = [...]string{"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"}

// fixedSize is the encoded size of a scalar of type t (0 for string and
// array, whose size is in the file).
var fixedSize = [...]uint64{1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8}

func (t ValueType) known() bool { return t < valueTypeCount }

func (t ValueType) String() string {
	if t.known() {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// minEncoded is the fewest bytes one value of type t can take, used to
// refuse a count the rest of the file cannot hold before looping over it.
func (t ValueType) minEncoded() uint64 {
	switch t {
	case TypeString:
		return 8 // the length
	case TypeArray:
		return 12 // element type and count
	}
	return fixedSize[t]
}

// TensorType is a ggml tensor type.
type TensorType uint32

type tensorTypeInfo struct {
	name string
	// block elements are stored in size bytes; size 0 marks a type the
	// format used to have and removed (its id is never reused).
	block, size uint64
}

// tensorTypes follows ggml's type_traits table (ggml v0.5.0: 43 types). Removed ids keep their old
// names so that the refusal can say what the file was made for.
var tensorTypes = [...]tensorTypeInfo{
	0: {"F32", 1, 4}, 1: {"F16", 1, 2}, 2: {"Q4_0", 32, 18}, 3: {"Q4_1", 32, 20},
	4: {"Q4_2", 0, 0}, 5: {"Q4_3", 0, 0},
	6: {"Q5_0", 32, 22}, 7: {"Q5_1", 32, 24}, 8: {"Q8_0", 32, 34}, 9: {"Q8_1", 32, 36},
	10: {"Q2_K", 256, 84}, 11: {"Q3_K", 256, 110}, 12: {"Q4_K", 256, 144}, 13: {"Q5_K", 256, 176},
	14: {"Q6_K", 256, 210}, 15: {"Q8_K", 256, 292}, 16: {"IQ2_XXS", 256, 66}, 17: {"IQ2_XS", 256, 74},
	18: {"IQ3_XXS", 256, 98}, 19: {"IQ1_S", 256, 50}, 20: {"IQ4_NL", 32, 18}, 21: {"IQ3_S", 256, 110},
	22: {"IQ2_S", 256, 82}, 23: {"IQ4_XS", 256, 136}, 24: {"I8", 1, 1}, 25: {"I16", 1, 2},
	26: {"I32", 1, 4}, 27: {"I64", 1, 8}, 28: {"F64", 1, 8}, 29: {"IQ1_M", 256, 56}, 30: {"BF16", 1, 2},
	31: {"Q4_0_4_4", 0, 0}, 32: {"Q4_0_4_8", 0, 0}, 33: {"Q4_0_8_8", 0, 0},
	34: {"TQ1_0", 256, 54}, 35: {"TQ2_0", 256, 66},
	36: {"IQ4_NL_4_4", 0, 0}, 37: {"IQ4_NL_4_8", 0, 0}, 38: {"IQ4_NL_8_8", 0, 0},
	39: {"MXFP4", 32, 17}, 40: {"NVFP4", 64, 36}, 41: {"Q1_0", 128, 18}, 42: {"Q2_0", 64, 18},
}

func (t TensorType) info() (tensorTypeInfo, bool) {
	if int(t) >= len(tensorTypes) {
		return tensorTypeInfo{}, false
	}
	return tensorTypes[t], true
}

func (t TensorType) String() string {
	if i, ok := t.info(); ok {
		return i.name
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// BlockSize and TypeSize say how many elements a block holds and how many
// bytes it takes; both are 0 for unknown or removed types.
func (t TensorType) BlockSize() uint64 { i, _ := t.info(); return i.block }
func (t TensorType) TypeSize() uint64  { i, _ := t.info(); return i.size }

// fileTypes names llama.cpp's general.file_type values (llama_ftype).
var fileTypes = map[uint64]string{
	0: "ALL_F32", 1: "MOSTLY_F16", 2: "MOSTLY_Q4_0", 3: "MOSTLY_Q4_1", 4: "MOSTLY_Q4_1_SOME_F16",
	7: "MOSTLY_Q8_0", 8: "MOSTLY_Q5_0", 9: "MOSTLY_Q5_1", 10: "MOSTLY_Q2_K", 11: "MOSTLY_Q3_K_S",
	12: "MOSTLY_Q3_K_M", 13: "MOSTLY_Q3_K_L", 14: "MOSTLY_Q4_K_S", 15: "MOSTLY_Q4_K_M",
	16: "MOSTLY_Q5_K_S", 17: "MOSTLY_Q5_K_M", 18: "MOSTLY_Q6_K", 19: "MOSTLY_IQ2_XXS",
	20: "MOSTLY_IQ2_XS", 21: "MOSTLY_Q2_K_S", 22: "MOSTLY_IQ3_XS", 23: "MOSTLY_IQ3_XXS",
	24: "MOSTLY_IQ1_S", 25: "MOSTLY_IQ4_NL", 26: "MOSTLY_IQ3_S", 27: "MOSTLY_IQ3_M",
	28: "MOSTLY_IQ2_S", 29: "MOSTLY_IQ2_M", 30: "MOSTLY_IQ4_XS", 31: "MOSTLY_IQ1_M",
	32: "MOSTLY_BF16", 36: "MOSTLY_TQ1_0", 37: "MOSTLY_TQ2_0", 38: "MOSTLY_MXFP4_MOE",
}

// FileTypeName names a general.file_type value.
func FileTypeName(v uint64) string {
	if n, ok := fileTypes[v]; ok {
		return n
	}
	return fmt.Sprintf("unknown (%d)", v)
}
