package audit

import (
	"fmt"
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

func s(name string) FieldSpec { return FieldSpec{name, KindString} }
func u(name string) FieldSpec { return FieldSpec{name, KindUint} }

var catalogue = map[Type]Spec{}

func init() {
	for _, sp := range []Spec{
		{VramAllocated, Info, []FieldSpec{u("requested_bytes"), u("allocated_bytes"), u("available_bytes"), u("used_bytes"), u("gpu_device")},
			"device memory for a shard is allocated"},
		{VramAllocationFailed, High, []FieldSpec{u("requested_bytes"), u("available_bytes"), s("reason"), u("gpu_device")},
			"out of memory or a driver error"},
		{VramDeallocated, Info, []FieldSpec{s("shard_id"), u("freed_bytes"), u("remaining_used"), u("gpu_device")},
			"a shard is released"},
		{VramSealed, Info, []FieldSpec{s("shard_id"), u("gpu_device"), u("vram_bytes"), s("digest"), s("backend")},
			"a shard is sealed"},
		{SealVerified, Info, []FieldSpec{s("shard_id"), u("gpu_device")},
			"a periodic check passes"},
		{SealVerificationFailed, Critical, []FieldSpec{s("shard_id"), s("reason"), s("expected_digest"), s("actual_digest"), s("action_taken")},
			"resident bytes or the seal signature do not match"},
		{PolicyViolation, Critical, []FieldSpec{s("policy"), s("violation"), s("details"), s("action_taken")},
			"residency policy broken (managed/host memory, wrong device)"},
		{PathTraversalAttempt, Critical, []FieldSpec{s("attempted_path"), s("allowed_roots")},
			"a model path escapes the allowed roots"},
		{IntegrityViolation, Critical, []FieldSpec{s("resource_type"), s("resource_id"), s("expected_hash"), s("actual_hash"), s("action_taken")},
			"SHA-256 of a model file (or of the bytes copied to the device) differs"},
		{MalformedModelRejected, High, []FieldSpec{s("model_ref"), s("validation_error"), s("action_taken")},
			"GGUF validation fails"},
		{ResourceLimitViolation, High, []FieldSpec{s("resource_type"), s("limit_type"), u("limit_value"), u("actual_value"), s("action_taken")},
			"a size or count limit is exceeded"},
		{ModelLoaded, Info, []FieldSpec{s("model_ref"), s("sha256"), s("architecture"), u("tensor_count"), u("file_bytes")},
			"a model passed every check"},
		{PluginStarted, Info, []FieldSpec{s("plugin"), s("kind"), s("version"), u("pid"), {"sandboxed", KindBool}, s("sandbox")},
			"a plugin process started and answered the handshake"},
		{PluginCrashed, High, []FieldSpec{s("plugin"), s("kind"), s("version"), u("pid"), s("exit_reason")},
			"a plugin process exited without being asked to"},
		{PluginChecksumMismatch, Critical, []FieldSpec{s("plugin"), s("path"), s("expected_sha256"), s("actual_sha256")},
			"a plugin binary differs from its configured sha256"},
		{AuditSinkFailed, High, []FieldSpec{s("sink"), s("reason"), u("undelivered")},
			"a sink stops taking events"},
		{AuditSinkRecovered, Info, []FieldSpec{s("sink"), s("reason"), u("undelivered")},
			"a sink takes events again"},
		{HostStarted, Info, []FieldSpec{s("version"), s("config_sha256")},
			"the host started"},
		{HostStopped, Info, []FieldSpec{s("reason"), u("undelivered")},
			"the last event of a clean shutdown"},
		// note is the signed checkpoint (a C2SP tlog-checkpoint signed note,
		// base64): the tree of every record before this one. The other
		// fields repeat what it says, for readers; the verifier checks
		// they agree. next_key is set at an epoch's end: the next epoch's
		// public key, certified by the signature of the ending one.
		{AuditCheckpoint, Info, []FieldSpec{s("note"), u("tree_size"), s("root_hash"), s("next_key")},
			"a signed tree head over the trail so far"},
		// After a crash: from_seq..to_seq are the seqs the crashed run may
		// have used after its last durable checkpoint, which the host cannot
		// vouch for. The log continues from the tree it last saved
		// (tree_size leaves, the last at resume_seq). checkpoints lists the
		// host's last checkpoints ("<seq>:<base64 note>", comma-separated;
		// "0:" is the empty tree) and segments the compact range of the
		// leaves from each to the next, the last to tree_size (base64
		// hashes, comma-separated; one list per checkpoint, ";"-separated):
		// a verifier continues only from a checkpoint it verified, through
		// each later one, which it checks.
		{AuditRecovered, High, []FieldSpec{u("from_seq"), u("to_seq"), s("reason"), u("resume_seq"), u("tree_size"), s("checkpoints"), s("segments")},
			"the host restarted after a crash; names the seqs it cannot vouch for"},
		// cosignature holds the witness's signature lines (base64) on the
		// checkpoint of tree_size, which precedes this record in the trail.
		{AuditCheckpointCosigned, Info, []FieldSpec{s("witness"), u("tree_size"), s("cosignature")},
			"a witness cosigned a checkpoint"},
		// status is the witness's HTTP answer (409, 422), witness_size the
		// tree size it holds: the log was forked or rolled back.
		// skew_seconds is how far the wall clock moved against the
		// monotonic one (negative: back); detected is "start" (behind the
		// state the last run saved) or "running".
		{AuditClockJumped, High, []FieldSpec{{"skew_seconds", KindInt}, s("detected")},
			"the wall clock jumped (set back, or forward) against the host's monotonic clock"},
		{AuditCheckpointRefused, Critical, []FieldSpec{s("witness"), u("tree_size"), u("status"), u("witness_size"), s("reason")},
			"a witness refused a checkpoint as inconsistent with the last it cosigned"},
	} {
		sort.Slice(sp.Fields, func(i, j int) bool { return sp.Fields[i].Name < sp.Fields[j].Name })
		catalogue[sp.Type] = sp
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
