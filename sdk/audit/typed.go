package audit

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"sync"
)

// Each catalogue entry's fields as a Go type: the only place a field's
// name is written (its `audit` tag). The catalogue's field list is read
// from these types, Make turns one into an event and Decode reads an
// event back into one, so a writer, the host and the verifier cannot
// disagree on a name or a kind. A field is a string, an int64, a uint64
// or a bool.

// Fields is one catalogue entry's typed fields.
type Fields interface{ EventType() Type }

// VramAllocatedFields is VramAllocated's.
type VramAllocatedFields struct {
	RequestedBytes uint64 `audit:"requested_bytes"`
	AllocatedBytes uint64 `audit:"allocated_bytes"`
	AvailableBytes uint64 `audit:"available_bytes"`
	UsedBytes      uint64 `audit:"used_bytes"`
	GPUDevice      uint64 `audit:"gpu_device"`
}

// VramAllocationFailedFields is VramAllocationFailed's.
type VramAllocationFailedFields struct {
	RequestedBytes uint64 `audit:"requested_bytes"`
	AvailableBytes uint64 `audit:"available_bytes"`
	Reason         string `audit:"reason"`
	GPUDevice      uint64 `audit:"gpu_device"`
}

// VramDeallocatedFields is VramDeallocated's.
type VramDeallocatedFields struct {
	ShardID       string `audit:"shard_id"`
	FreedBytes    uint64 `audit:"freed_bytes"`
	RemainingUsed uint64 `audit:"remaining_used"`
	GPUDevice     uint64 `audit:"gpu_device"`
}

// VramSealedFields is VramSealed's.
type VramSealedFields struct {
	ShardID   string `audit:"shard_id"`
	GPUDevice uint64 `audit:"gpu_device"`
	VramBytes uint64 `audit:"vram_bytes"`
	Digest    string `audit:"digest"`
	Backend   string `audit:"backend"`
}

// SealVerifiedFields is SealVerified's.
type SealVerifiedFields struct {
	ShardID   string `audit:"shard_id"`
	GPUDevice uint64 `audit:"gpu_device"`
}

// SealVerificationFailedFields is SealVerificationFailed's.
type SealVerificationFailedFields struct {
	ShardID        string `audit:"shard_id"`
	Reason         string `audit:"reason"`
	ExpectedDigest string `audit:"expected_digest"`
	ActualDigest   string `audit:"actual_digest"`
	ActionTaken    string `audit:"action_taken"`
}

// PolicyViolationFields is PolicyViolation's.
type PolicyViolationFields struct {
	Policy      string `audit:"policy"`
	Violation   string `audit:"violation"`
	Details     string `audit:"details"`
	ActionTaken string `audit:"action_taken"`
}

// PathTraversalAttemptFields is PathTraversalAttempt's.
type PathTraversalAttemptFields struct {
	AttemptedPath string `audit:"attempted_path"`
	AllowedRoots  string `audit:"allowed_roots"`
}

// IntegrityViolationFields is IntegrityViolation's.
type IntegrityViolationFields struct {
	ResourceType string `audit:"resource_type"`
	ResourceID   string `audit:"resource_id"`
	ExpectedHash string `audit:"expected_hash"`
	ActualHash   string `audit:"actual_hash"`
	ActionTaken  string `audit:"action_taken"`
}

// MalformedModelRejectedFields is MalformedModelRejected's.
type MalformedModelRejectedFields struct {
	ModelRef        string `audit:"model_ref"`
	ValidationError string `audit:"validation_error"`
	ActionTaken     string `audit:"action_taken"`
}

// ResourceLimitViolationFields is ResourceLimitViolation's.
type ResourceLimitViolationFields struct {
	ResourceType string `audit:"resource_type"`
	LimitType    string `audit:"limit_type"`
	LimitValue   uint64 `audit:"limit_value"`
	ActualValue  uint64 `audit:"actual_value"`
	ActionTaken  string `audit:"action_taken"`
}

// ModelLoadedFields is ModelLoaded's.
type ModelLoadedFields struct {
	ModelRef     string `audit:"model_ref"`
	SHA256       string `audit:"sha256"`
	Architecture string `audit:"architecture"`
	TensorCount  uint64 `audit:"tensor_count"`
	FileBytes    uint64 `audit:"file_bytes"`
}

// PluginStartedFields is PluginStarted's. Sandboxed and Sandbox are what
// the host enforced on the process.
type PluginStartedFields struct {
	Plugin    string `audit:"plugin"`
	Kind      string `audit:"kind"`
	Version   string `audit:"version"`
	PID       uint64 `audit:"pid"`
	Sandboxed bool   `audit:"sandboxed"`
	Sandbox   string `audit:"sandbox"`
}

// PluginCrashedFields is PluginCrashed's.
type PluginCrashedFields struct {
	Plugin     string `audit:"plugin"`
	Kind       string `audit:"kind"`
	Version    string `audit:"version"`
	PID        uint64 `audit:"pid"`
	ExitReason string `audit:"exit_reason"`
}

// PluginChecksumMismatchFields is PluginChecksumMismatch's.
type PluginChecksumMismatchFields struct {
	Plugin         string `audit:"plugin"`
	Path           string `audit:"path"`
	ExpectedSHA256 string `audit:"expected_sha256"`
	ActualSHA256   string `audit:"actual_sha256"`
}

// AuditSinkFailedFields is AuditSinkFailed's.
type AuditSinkFailedFields struct {
	Sink        string `audit:"sink"`
	Reason      string `audit:"reason"`
	Undelivered uint64 `audit:"undelivered"`
}

// AuditSinkRecoveredFields is AuditSinkRecovered's.
type AuditSinkRecoveredFields struct {
	Sink        string `audit:"sink"`
	Reason      string `audit:"reason"`
	Undelivered uint64 `audit:"undelivered"`
}

// HostStartedFields is HostStarted's.
type HostStartedFields struct {
	Version      string `audit:"version"`
	ConfigSHA256 string `audit:"config_sha256"`
}

// HostStoppedFields is HostStopped's.
type HostStoppedFields struct {
	Reason      string `audit:"reason"`
	Undelivered uint64 `audit:"undelivered"`
}

// AuditCheckpointFields is AuditCheckpoint's: Note is the signed
// checkpoint (a C2SP tlog-checkpoint signed note, base64), the tree of
// every record before this one; the other fields repeat what it says, for
// readers, and the verifier checks they agree. NextKey is set at an
// epoch's end: the next epoch's public key, certified by the signature of
// the ending one.
type AuditCheckpointFields struct {
	Note     string `audit:"note"`
	TreeSize uint64 `audit:"tree_size"`
	RootHash string `audit:"root_hash"`
	NextKey  string `audit:"next_key"`
}

// AuditRecoveredFields is AuditRecovered's, recorded first after a crash:
// FromSeq..ToSeq are the seqs the crashed run may have used after its last
// durable checkpoint, which the host cannot vouch for. The log continues
// from the tree it last saved (TreeSize leaves, the last at ResumeSeq).
// Checkpoints lists the host's last checkpoints ("<seq>:<base64 note>",
// comma-separated; "0:" is the empty tree) and Segments the compact range
// of the leaves from each to the next, the last to TreeSize (base64
// hashes, comma-separated; one list per checkpoint, ";"-separated): a
// verifier continues only from a checkpoint it verified, through each
// later one, which it checks.
type AuditRecoveredFields struct {
	FromSeq     uint64 `audit:"from_seq"`
	ToSeq       uint64 `audit:"to_seq"`
	Reason      string `audit:"reason"`
	ResumeSeq   uint64 `audit:"resume_seq"`
	TreeSize    uint64 `audit:"tree_size"`
	Checkpoints string `audit:"checkpoints"`
	Segments    string `audit:"segments"`
}

// AuditCheckpointCosignedFields is AuditCheckpointCosigned's: Cosignature
// holds the witness's signature lines (base64) on the checkpoint of
// TreeSize, which precedes this record in the trail.
type AuditCheckpointCosignedFields struct {
	Witness     string `audit:"witness"`
	TreeSize    uint64 `audit:"tree_size"`
	Cosignature string `audit:"cosignature"`
}

// AuditCheckpointRefusedFields is AuditCheckpointRefused's: Status is the
// witness's HTTP answer (409, 422), WitnessSize the tree size it holds:
// the log was forked or rolled back.
type AuditCheckpointRefusedFields struct {
	Witness     string `audit:"witness"`
	TreeSize    uint64 `audit:"tree_size"`
	Status      uint64 `audit:"status"`
	WitnessSize uint64 `audit:"witness_size"`
	Reason      string `audit:"reason"`
}

// AuditClockJumpedFields is AuditClockJumped's: SkewSeconds is how far the
// wall clock moved against the monotonic one (negative: back); Detected
// is "start" (behind the state the last run saved) or "running".
type AuditClockJumpedFields struct {
	SkewSeconds int64  `audit:"skew_seconds"`
	Detected    string `audit:"detected"`
}

func (VramAllocatedFields) EventType() Type           { return VramAllocated }
func (VramAllocationFailedFields) EventType() Type    { return VramAllocationFailed }
func (VramDeallocatedFields) EventType() Type         { return VramDeallocated }
func (VramSealedFields) EventType() Type              { return VramSealed }
func (SealVerifiedFields) EventType() Type            { return SealVerified }
func (SealVerificationFailedFields) EventType() Type  { return SealVerificationFailed }
func (PolicyViolationFields) EventType() Type         { return PolicyViolation }
func (PathTraversalAttemptFields) EventType() Type    { return PathTraversalAttempt }
func (IntegrityViolationFields) EventType() Type      { return IntegrityViolation }
func (MalformedModelRejectedFields) EventType() Type  { return MalformedModelRejected }
func (ResourceLimitViolationFields) EventType() Type  { return ResourceLimitViolation }
func (ModelLoadedFields) EventType() Type             { return ModelLoaded }
func (PluginStartedFields) EventType() Type           { return PluginStarted }
func (PluginCrashedFields) EventType() Type           { return PluginCrashed }
func (PluginChecksumMismatchFields) EventType() Type  { return PluginChecksumMismatch }
func (AuditSinkFailedFields) EventType() Type         { return AuditSinkFailed }
func (AuditSinkRecoveredFields) EventType() Type      { return AuditSinkRecovered }
func (HostStartedFields) EventType() Type             { return HostStarted }
func (HostStoppedFields) EventType() Type             { return HostStopped }
func (AuditCheckpointFields) EventType() Type         { return AuditCheckpoint }
func (AuditRecoveredFields) EventType() Type          { return AuditRecovered }
func (AuditCheckpointCosignedFields) EventType() Type { return AuditCheckpointCosigned }
func (AuditCheckpointRefusedFields) EventType() Type  { return AuditCheckpointRefused }
func (AuditClockJumpedFields) EventType() Type        { return AuditClockJumped }

// layout is one Fields type's fields in the catalogue's order (by name).
type layout struct {
	specs []FieldSpec
	index []int // struct field of each spec
}

var layouts sync.Map // reflect.Type -> *layout

func layoutOf(t reflect.Type) *layout {
	if l, ok := layouts.Load(t); ok {
		return l.(*layout)
	}
	l := &layout{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("audit")
		var k Kind
		switch f.Type.Kind() {
		case reflect.String:
			k = KindString
		case reflect.Int64:
			k = KindInt
		case reflect.Uint64:
			k = KindUint
		case reflect.Bool:
			k = KindBool
		}
		if name == "" || k == 0 {
			panic(fmt.Sprintf("audit: field %s.%s has no audit tag or an unsupported type", t.Name(), f.Name))
		}
		l.specs = append(l.specs, FieldSpec{name, k})
		l.index = append(l.index, i)
	}
	sort.Sort(byName{l})
	layouts.Store(t, l)
	return l
}

type byName struct{ *layout }

func (b byName) Len() int           { return len(b.specs) }
func (b byName) Less(i, j int) bool { return b.specs[i].Name < b.specs[j].Name }
func (b byName) Swap(i, j int) {
	b.specs[i], b.specs[j] = b.specs[j], b.specs[i]
	b.index[i], b.index[j] = b.index[j], b.index[i]
}

// Make is the event of f's type carrying f, from actor (the host fills in
// an empty actor and the service id).
func Make(actor Actor, f Fields) (Event, error) {
	v := reflect.ValueOf(f)
	l := layoutOf(v.Type())
	fields := make([]Field, len(l.specs))
	for i, sp := range l.specs {
		fv := v.Field(l.index[i])
		switch sp.Kind {
		case KindString:
			fields[i] = Str(sp.Name, fv.String())
		case KindInt:
			fields[i] = Int(sp.Name, fv.Int())
		case KindUint:
			fields[i] = Uint(sp.Name, fv.Uint())
		case KindBool:
			fields[i] = Bool(sp.Name, fv.Bool())
		}
	}
	return New(f.EventType(), actor, fields...)
}

// Decode reads e into dst, a pointer to the Fields type of e's type. An
// event of another type, or without one of the fields in its kind, is an
// error naming it (an event read from a trail is checked against the
// catalogue, so that means a bug or an edited record).
func Decode(e *Event, dst Fields) error {
	v := reflect.ValueOf(dst)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		panic(fmt.Sprintf("audit: Decode into %T, not a pointer", dst))
	}
	if want := dst.EventType(); e.Type != want {
		return fmt.Errorf("seq %d is %s, not %s", e.Seq, e.Type, want)
	}
	v = v.Elem()
	l := layoutOf(v.Type())
	for i, sp := range l.specs {
		val, ok := e.Field(sp.Name)
		// A record read back spells a non-negative int as a uint.
		if ok && sp.Kind == KindInt && val.Kind() == KindUint && val.Uint() <= math.MaxInt64 {
			val = Int(sp.Name, int64(val.Uint())).Value
		}
		if !ok || val.Kind() != sp.Kind {
			return fmt.Errorf("seq %d: %s has no %s field %q", e.Seq, e.Type, sp.Kind, sp.Name)
		}
		fv := v.Field(l.index[i])
		switch sp.Kind {
		case KindString:
			fv.SetString(val.String())
		case KindInt:
			fv.SetInt(val.Int())
		case KindUint:
			fv.SetUint(val.Uint())
		case KindBool:
			fv.SetBool(val.Bool())
		}
	}
	return nil
}
