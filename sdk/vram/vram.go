// Package vram is the VramBackend plugin kind: what a backend implements
// (Backend: a few primitives over device memory), how a plugin serves it
// (Serve) and how the host calls it (Client). The SDK, not the backend,
// opens the model (beneath the allowed roots), checks the file's SHA-256
// against the expected one (and has the backend free the memory when they
// differ) and reads the digest back; the host, not the plugin, checks the
// reported fields, signs the seal (Sign, under a key only it holds) and
// compares every later digest with the sealed one. A backend can neither
// forget any of it nor vouch for itself.
package vram

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"time"

	"github.com/vramward/vramward/sdk/schema"
)

// Backends a seal can name. Emulated backends hold shards in host memory:
// useful where no GPU is, never mistaken for residency.
const (
	BackendCUDA     = "cuda"
	BackendEmulated = "emulated"
)

// LeafBytes is the tree digest's leaf: 64 KiB leaves give a GPU one
// thread per leaf with enough threads to fill it, and a CPU many leaves to
// spread over its cores (DESIGN.md, "Seals").
const LeafBytes = 64 << 10

var shardIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)

// CheckShardID refuses an id that is empty, over 128 characters or holds
// anything but letters, digits and _.:- (it names files, metrics labels
// and log lines).
func CheckShardID(id string) error {
	if !shardIDRE.MatchString(id) {
		return fmt.Errorf("shard id %q: want 1 to 128 letters, digits, '_', '.', ':' or '-', starting with a letter or digit", id)
	}
	return nil
}

// Info names a backend and publishes its config schema.
type Info struct {
	Name    string
	Version string
	Schema  schema.Schema
}

// Device is one device a backend can place shards on.
type Device struct {
	Index      uint32 `json:"index"`
	Name       string `json:"name"`
	UUID       string `json:"uuid"`
	TotalBytes uint64 `json:"total_bytes"`
	FreeBytes  uint64 `json:"free_bytes"`
	Backend    string `json:"backend"`
}

// Resident is what Load put in device memory.
type Resident struct {
	Device     uint32
	DeviceUUID string
	Backend    string
	Bytes      uint64
	// FileSHA256 is the SHA-256 of the bytes as they were copied.
	FileSHA256 [32]byte
	// Memory after the allocation.
	FreeBytes, UsedBytes uint64
}

// DeviceStats is a device's memory and the shards on it.
type DeviceStats struct {
	Device      Device `json:"device"`
	UsedBytes   uint64 `json:"used_bytes"`
	SealedBytes uint64 `json:"sealed_bytes"`
	Shards      uint32 `json:"shards"`
}

// Backend is what a VRAM backend plugin implements. The SDK serialises
// Configure; the other calls may run concurrently (on different shards).
type Backend interface {
	Info() Info
	// Configure checks the config block and opens the devices; it returns
	// the backend in use (BackendCUDA or BackendEmulated).
	Configure(ctx context.Context, cfg schema.Values) (backend string, err error)
	Devices(ctx context.Context) ([]Device, error)
	// Load allocates device memory on device for shardID and copies model
	// into it, hashing the bytes as they are copied. model is a regular,
	// non-empty file the SDK opened beneath the allowed roots (and under
	// the size cap) the host passed: read it through this descriptor only
	// (from offset 0), and do not close it. A
	// refusal is a *Failure (ALLOCATION_FAILED with the sizes,
	// POLICY_VIOLATION when the memory is not plain device memory on that
	// device, SHARD_EXISTS, DEVICE_NOT_FOUND, ...); on any failure nothing
	// stays allocated.
	Load(ctx context.Context, model *os.File, shardID string, device uint32) (Resident, error)
	// Digest reads shardID's bytes back from device memory and returns
	// their tree digest (TreeDigest's definition). ReasonShardNotFound when
	// the backend holds no such shard.
	Digest(ctx context.Context, shardID string) ([32]byte, error)
	// Release frees shardID's memory.
	Release(ctx context.Context, shardID string) (freed, used uint64, err error)
	Stats(ctx context.Context) ([]DeviceStats, error)
	// Close frees everything. Called once, at the end.
	Close() error
}

// Models says where a backend may open model files: the loader's allowed
// roots and size cap, which the host passes on in Configure.
type Models struct {
	AllowedRoots []string
	MaxFileBytes uint64
}

// SealedShard is a shard in device memory with its seal. The backend
// reports every field but WorkerID, SealedAt and Signature, which the host
// sets when it has checked the others and signs.
type SealedShard struct {
	WorkerID   string    `json:"worker_id"`
	ShardID    string    `json:"shard_id"`
	Device     uint32    `json:"device"`
	DeviceUUID string    `json:"device_uuid"`
	Backend    string    `json:"backend"`
	Bytes      uint64    `json:"bytes"`
	Digest     [32]byte  `json:"digest"`
	LeafBytes  uint32    `json:"leaf_bytes"`
	FileSHA256 [32]byte  `json:"file_sha256"`
	SealedAt   time.Time `json:"sealed_at"`
	Signature  [32]byte  `json:"signature"`
}

// VerifyResult is the outcome of a seal check.
type VerifyResult int

const (
	VerifyOK VerifyResult = iota + 1
	VerifyDigestMismatch
	VerifySignatureInvalid
	VerifyNotResident
)

func (r VerifyResult) String() string {
	switch r {
	case VerifyOK:
		return "OK"
	case VerifyDigestMismatch:
		return "DIGEST_MISMATCH"
	case VerifySignatureInvalid:
		return "SIGNATURE_INVALID"
	case VerifyNotResident:
		return "NOT_RESIDENT"
	}
	return fmt.Sprintf("VerifyResult(%d)", int(r))
}

// Verification is a seal check's answer.
type Verification struct {
	Result   VerifyResult
	Expected [32]byte
	Actual   [32]byte // zero unless the digest was recomputed
	Duration time.Duration
}
