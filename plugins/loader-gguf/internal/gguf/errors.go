package gguf

import "fmt"

// Reason names why a file was refused, in words a program can branch on.
type Reason string

const (
	ReasonBadMagic           Reason = "BAD_MAGIC"
	ReasonUnsupportedVersion Reason = "UNSUPPORTED_VERSION"
	ReasonByteSwapped        Reason = "BYTE_SWAPPED"
	ReasonTruncated          Reason = "TRUNCATED"
	ReasonMetadataTooLarge   Reason = "METADATA_TOO_LARGE"
	ReasonTooManyTensors     Reason = "TOO_MANY_TENSORS"
	ReasonTooManyKV          Reason = "TOO_MANY_KV"
	ReasonStringTooLong      Reason = "STRING_TOO_LONG"
	ReasonArrayTooLong       Reason = "ARRAY_TOO_LONG"
	ReasonArrayTooDeep       Reason = "ARRAY_TOO_DEEP"
	ReasonUnknownValueType   Reason = "UNKNOWN_VALUE_TYPE"
	ReasonBadBool            Reason = "BAD_BOOL"
	ReasonEmptyKey           Reason = "EMPTY_KEY"
	ReasonDuplicateKey       Reason = "DUPLICATE_KEY"
	ReasonInvalidUTF8        Reason = "INVALID_UTF8"
	ReasonBadAlignment       Reason = "BAD_ALIGNMENT"
	ReasonBadTensorName      Reason = "BAD_TENSOR_NAME"
	ReasonTensorNameTooLong  Reason = "TENSOR_NAME_TOO_LONG"
	ReasonDuplicateTensor    Reason = "DUPLICATE_TENSOR"
	ReasonBadDims            Reason = "BAD_DIMS"
	ReasonUnknownTensorType  Reason = "UNKNOWN_TENSOR_TYPE"
	ReasonRemovedTensorType  Reason = "REMOVED_TENSOR_TYPE"
	ReasonBlockMisaligned    Reason = "BLOCK_MISALIGNED"
	ReasonSizeOverflow       Reason = "SIZE_OVERFLOW"
	ReasonTensorOutOfBounds  Reason = "TENSOR_OUT_OF_BOUNDS"
	ReasonBadKey             Reason = "BAD_KEY"
	ReasonTensorOutOfPlace   Reason = "TENSOR_OUT_OF_PLACE"
	ReasonNULInString        Reason = "NUL_IN_STRING"
)

// Reasons lists every reason the reader gives, for documentation checks.
func Reasons() []Reason {
	return []Reason{ReasonBadMagic, ReasonUnsupportedVersion, ReasonByteSwapped, ReasonTruncated, ReasonMetadataTooLarge,
		ReasonTooManyTensors, ReasonTooManyKV, ReasonStringTooLong, ReasonArrayTooLong, ReasonArrayTooDeep,
		ReasonUnknownValueType, ReasonBadBool, ReasonEmptyKey, ReasonDuplicateKey, ReasonInvalidUTF8, ReasonBadAlignment,
		ReasonBadTensorName, ReasonTensorNameTooLong, ReasonDuplicateTensor, ReasonBadDims, ReasonUnknownTensorType,
		ReasonRemovedTensorType, ReasonBlockMisaligned, ReasonSizeOverflow,
		ReasonTensorOutOfBounds, ReasonBadKey, ReasonTensorOutOfPlace, ReasonNULInString}
}

// Error is a refusal: what is wrong and the byte offset of the field at
// fault.
type Error struct {
	Offset int64
	Reason Reason
	Msg    string
}

func (e *Error) Error() string {
	return fmt.Sprintf("malformed GGUF (%s) at byte %d: %s", e.Reason, e.Offset, e.Msg)
}

// Is matches another *Error with the same Reason.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Reason == e.Reason
}
