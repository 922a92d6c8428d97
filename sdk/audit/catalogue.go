package audit

import (
	"fmt"
	"reflect"
	"sort"
)

// Type names an event type of the catalogue.
type Type string

// The catalogue's event types (DESIGN.md, "Audit events").
const (
	VramAllocated          Type = "VramAllocated"
	VramAllocationFailed   Type = "VramAllocationFailed"
	VramDeallocated        Type = "VramDeallocated"
	VramSealed             Type = "VramSealed"
	SealVerified           Type = "SealVerified"
	SealVerificationFailed Type = "SealVerificationFailed"
	PolicyViolation        Type = "PolicyViolation"
	PathTraversalAttempt   Type = "PathTraversalAttempt"
	IntegrityViolation     Type = "IntegrityViolation"
	MalformedModelRejected Type = "MalformedModelRejected"
	ResourceLimitViolation Type = "ResourceLimitViolation"
	ModelLoaded            Type = "ModelLoaded"
	PluginStarted          Type = "PluginStarted"
	PluginCrashed          Type = "PluginCrashed"
	PluginChecksumMismatch Type = "PluginChecksumMismatch"
	AuditSinkFailed        Type = "AuditSinkFailed"
	AuditSinkRecovered     Type = "AuditSinkRecovered"
	HostStarted            Type = "HostStarted"
	HostStopped            Type = "HostStopped"
	AuditCheckpoint        Type = "AuditCheckpoint"
	AuditRecovered         Type = "AuditRecovered"
	// A witness cosigned a checkpoint, or refused one as inconsistent with
	// the last it cosigned.
	AuditCheckpointCosigned Type = "AuditCheckpointCosigned"
	AuditCheckpointRefused  Type = "AuditCheckpointRefused"
	// The wall clock moved against the monotonic one: timestamps around
	// it are not comparable, and epochs are timed by the monotonic clock.
	AuditClockJumped Type = "AuditClockJumped"
)

// Kind is the type of one field's value.
type Kind uint8

const (
	KindString Kind = iota + 1
	KindInt
	KindUint
	KindBool
)

func (k Kind) String() string {
	switch k {
	case KindString:
		return "string"
	case KindInt:
		return "int"
	case KindUint:
		return "uint"
	case KindBool:
		return "bool"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// FieldSpec names one field of an event type and its kind.
type FieldSpec struct {
	Name string
	Kind Kind
}

// Spec is one catalogue entry: an event type, its fixed severity and the
// fields every event of the type carries (no more, no fewer).
type Spec struct {
	Type     Type
	Severity Severity
	Fields   []FieldSpec
	// When says when the event is emitted.
	When string
}

var (
	catalogue = map[Type]Spec{}
	// typed is each type's Fields, zero.
	typed = map[Type]Fields{}
)

// The catalogue: each type's severity and when it is emitted; its fields
// are its Fields type's (typed.go).
func init() {
	for _, e := range []struct {
		fields   Fields
		severity Severity
		when     string
	}{
		{VramAllocatedFields{}, Info, "device memory for a shard is allocated"},
		{VramAllocationFailedFields{}, High, "out of memory or a driver error"},
		{VramDeallocatedFields{}, Info, "a shard is released"},
		{VramSealedFields{}, Info, "a shard is sealed"},
		{SealVerifiedFields{}, Info, "a periodic check passes"},
		{SealVerificationFailedFields{}, Critical, "resident bytes or the seal signature do not match"},
		{PolicyViolationFields{}, Critical, "residency policy broken (managed/host memory, wrong device)"},
		{PathTraversalAttemptFields{}, Critical, "a model path escapes the allowed roots"},
		{IntegrityViolationFields{}, Critical, "SHA-256 of a model file (or of the bytes copied to the device) differs"},
		{MalformedModelRejectedFields{}, High, "GGUF validation fails"},
		{ResourceLimitViolationFields{}, High, "a size or count limit is exceeded"},
		{ModelLoadedFields{}, Info, "a model passed every check"},
		{PluginStartedFields{}, Info, "a plugin process started and answered the handshake"},
		{PluginCrashedFields{}, High, "a plugin process exited without being asked to"},
		{PluginChecksumMismatchFields{}, Critical, "a plugin binary differs from its configured sha256"},
		{AuditSinkFailedFields{}, High, "a sink stops taking events"},
		{AuditSinkRecoveredFields{}, Info, "a sink takes events again"},
		{HostStartedFields{}, Info, "the host started"},
		{HostStoppedFields{}, Info, "the last event of a clean shutdown"},
		{AuditCheckpointFields{}, Info, "a signed tree head over the trail so far"},
		{AuditRecoveredFields{}, High, "the host restarted after a crash; names the seqs it cannot vouch for"},
		{AuditCheckpointCosignedFields{}, Info, "a witness cosigned a checkpoint"},
		{AuditClockJumpedFields{}, High, "the wall clock jumped (set back, or forward) against the host's monotonic clock"},
		{AuditCheckpointRefusedFields{}, Critical, "a witness refused a checkpoint as inconsistent with the last it cosigned"},
	} {
		t := e.fields.EventType()
		specs := layoutOf(reflect.TypeOf(e.fields)).specs
		catalogue[t] = Spec{Type: t, Severity: e.severity, Fields: append([]FieldSpec(nil), specs...), When: e.when}
		typed[t] = e.fields
	}
}

// Lookup returns the catalogue entry of t.
func Lookup(t Type) (Spec, bool) {
	sp, ok := catalogue[t]
	return sp, ok
}

// Catalogue returns every entry, sorted by type.
func Catalogue() []Spec {
	out := make([]Spec, 0, len(catalogue))
	for _, sp := range catalogue {
		out = append(out, sp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out
}
