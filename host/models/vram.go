package models

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vramward/vramward/host/config"
	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/vram"
)

// VramBackend is the part of a VRAM backend client the worker needs.
type VramBackend interface {
	LoadAndSeal(ctx context.Context, path, expectedSHA256, shardID string, device uint32) (*vram.Loaded, error)
	Verify(ctx context.Context, shard vram.SealedShard) (vram.Verification, error)
	Release(ctx context.Context, shardID string) (freed, used uint64, err error)
	Stats(ctx context.Context) ([]vram.DeviceStats, error)
}

// Actions taken after a failed seal verification (verify.on_failure).
const (
	ActionReleased = "shard_released"
	ActionKept     = "shard_kept"
)

// SealOptions are the host's side of every seal.
type SealOptions struct {
	// Key signs seals (vram.DeriveSealKey of the worker token); it never
	// leaves the host.
	Key      []byte
	WorkerID string
	// RequireBackend, when set, refuses a shard any other backend reports
	// (vram { require_backend }).
	RequireBackend string
	// OnFailure is verify.on_failure: "release" or "keep".
	OnFailure string
}

// Shards holds the sealed shards and keeps verifying them. The backend
// only loads, reads back and reports; the host checks what it reports
// against what it asked for, signs the seal, and compares every later
// digest with the sealed one itself.
type Shards struct {
	vb        VramBackend
	em        Emitter
	log       hclog.Logger
	m         *Metrics
	onFailure string // "release" or "keep"
	opts      SealOptions

	mu     sync.Mutex
	sealed map[string]vram.SealedShard
	// checked is each shard's last verification: when, and its result.
	checked map[string]Verified
}

// Verified is a shard's last verification.
type Verified struct {
	At     time.Time
	Result string
}

// LastVerified returns a shard's last verification, if any.
func (s *Shards) LastVerified(id string) (Verified, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.checked[id]
	return v, ok
}

func (s *Shards) noteVerified(id, result string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.checked == nil {
		s.checked = map[string]Verified{}
	}
	s.checked[id] = Verified{At: time.Now().UTC(), Result: result}
}

// NewShards makes the set.
func NewShards(vb VramBackend, em Emitter, m *Metrics, opts SealOptions, log hclog.Logger) *Shards {
	return &Shards{vb: vb, em: em, m: m, onFailure: opts.OnFailure, opts: opts, log: log, sealed: map[string]vram.SealedShard{}}
}

// Reset points the set at a new backend (its plugin restarted) and forgets
// the shards: they died with the old process.
func (s *Shards) Reset(vb VramBackend) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.vb = vb
	s.sealed = map[string]vram.SealedShard{}
}

// Sealed returns the shards held now, sorted by id.
func (s *Shards) Sealed() []vram.SealedShard {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]vram.SealedShard, 0, len(s.sealed))
	for _, sh := range s.sealed {
		out = append(out, sh)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ShardID < out[j].ShardID })
	return out
}

func (s *Shards) emit(ctx context.Context, f audit.Fields) error {
	e, err := audit.Make(audit.Actor{}, f)
	if err != nil {
		return err
	}
	if err := s.em.Emit(ctx, e); err != nil {
		return fmt.Errorf("record %s: %w", f.EventType(), err)
	}
	return nil
}

// Load loads and seals every model the loader accepted, recording each
// step. A refused model is recorded and skipped; an event that cannot be
// recorded is an error (the caller fails closed).
//
// ctx ending stops it between two models, as CheckModels does: the shard
// being sealed is finished and recorded, the rest are not loaded.
func (s *Shards) Load(ctx context.Context, checked []Result) error {
	var errs []error
	stop, ctx := ctx, context.WithoutCancel(ctx)
	for _, r := range checked {
		if stop.Err() != nil {
			s.log.Warn("stopping between models: the rest are not loaded")
			break
		}
		if r.Loaded == nil {
			continue
		}
		if err := s.loadOne(ctx, r.Model, r.Loaded.SHA256, r.Loaded.Summary.FileBytes); err != nil {
			errs = append(errs, err)
		}
	}
	s.refreshStats(ctx)
	return errors.Join(errs...)
}

func (s *Shards) loadOne(ctx context.Context, m *config.Model, sha string, fileBytes uint64) error {
	dev := uint32(m.Device)
	l, err := s.vb.LoadAndSeal(ctx, m.Path, sha, m.ShardID, dev)
	if err != nil {
		s.log.Error("model not loaded", "model", m.Name, "shard", m.ShardID, "device", dev, "error", err)
		return s.recordLoadFailure(ctx, m, err)
	}
	sh := l.Shard
	if violation := s.check(m, sha, fileBytes, &sh); violation != "" {
		s.log.Error("the VRAM backend reported a shard that is not the one asked for; releasing it", "shard", m.ShardID, "violation", violation)
		if _, _, err := s.vb.Release(ctx, sh.ShardID); err != nil {
			s.log.Error("release of the refused shard failed", "shard", sh.ShardID, "error", err)
		}
		return s.emit(ctx, audit.PolicyViolationFields{Policy: "seal_fields", Violation: violation,
			Details:     fmt.Sprintf("model %s, shard %s on device %d, backend %q", m.Name, m.ShardID, m.Device, sh.Backend),
			ActionTaken: "shard_released"})
	}
	sh.WorkerID, sh.SealedAt = s.opts.WorkerID, time.Now().UTC()
	sig, err := vram.Sign(s.opts.Key, &sh)
	if err != nil {
		_, _, _ = s.vb.Release(ctx, sh.ShardID)
		return fmt.Errorf("sign the seal of %s: %w", sh.ShardID, err)
	}
	sh.Signature = sig
	s.log.Info("shard sealed", "shard", sh.ShardID, "device", sh.Device, "backend", sh.Backend, "bytes", sh.Bytes, "digest", hex.EncodeToString(sh.Digest[:]))
	if sh.Backend == vram.BackendEmulated {
		s.log.Warn("the shard is EMULATED (host memory): its seal proves no GPU residency", "shard", sh.ShardID)
	}
	s.mu.Lock()
	s.sealed[sh.ShardID] = sh
	s.mu.Unlock()
	gpuDev := uint64(sh.Device)
	if err := s.emit(ctx, audit.VramAllocatedFields{RequestedBytes: sh.Bytes, AllocatedBytes: l.AllocatedBytes,
		AvailableBytes: l.FreeBytes, UsedBytes: l.UsedBytes, GPUDevice: gpuDev}); err != nil {
		return err
	}
	return s.emit(ctx, audit.VramSealedFields{ShardID: sh.ShardID, GPUDevice: gpuDev,
		VramBytes: sh.Bytes, Digest: hex.EncodeToString(sh.Digest[:]), Backend: sh.Backend})
}

// check compares what the backend reports with what the host asked for and
// knows (the loader's file SHA-256 and size), and the backend policy; it
// says what is wrong, or "".
func (s *Shards) check(m *config.Model, sha string, fileBytes uint64, sh *vram.SealedShard) string {
	want, err := hex.DecodeString(sha)
	switch {
	case sh.ShardID != m.ShardID:
		return fmt.Sprintf("shard id %q, asked for %q", sh.ShardID, m.ShardID)
	case sh.Device != uint32(m.Device):
		return fmt.Sprintf("device %d, asked for %d", sh.Device, m.Device)
	case err != nil || len(want) != 32 || subtle.ConstantTimeCompare(want, sh.FileSHA256[:]) != 1:
		return fmt.Sprintf("file SHA-256 %x, the loader checked %s", sh.FileSHA256, sha)
	case fileBytes != 0 && sh.Bytes != fileBytes:
		return fmt.Sprintf("%d bytes, the file has %d", sh.Bytes, fileBytes)
	case sh.LeafBytes != vram.LeafBytes:
		return fmt.Sprintf("leaf size %d, want %d", sh.LeafBytes, vram.LeafBytes)
	case sh.Backend != vram.BackendCUDA && sh.Backend != vram.BackendEmulated:
		return fmt.Sprintf("unknown backend %q", sh.Backend)
	case s.opts.RequireBackend != "" && sh.Backend != s.opts.RequireBackend:
		return fmt.Sprintf("backend %q, vram.require_backend is %q", sh.Backend, s.opts.RequireBackend)
	case sh.Digest == [32]byte{}:
		return "no digest"
	}
	return ""
}

// recordLoadFailure records what a refused load calls for.
func (s *Shards) recordLoadFailure(ctx context.Context, m *config.Model, err error) error {
	var f *vram.Failure
	if !errors.As(err, &f) {
		return nil
	}
	switch f.Reason {
	case vram.ReasonAllocationFailed:
		return s.emit(ctx, audit.VramAllocationFailedFields{RequestedBytes: f.RequestedBytes,
			AvailableBytes: f.AvailableBytes, Reason: f.Msg, GPUDevice: uint64(m.Device)})
	case vram.ReasonPolicyViolation:
		return s.emit(ctx, audit.PolicyViolationFields{Policy: f.Policy, Violation: f.Violation,
			Details: fmt.Sprintf("shard %s on device %d: %s", m.ShardID, m.Device, f.Msg), ActionTaken: "allocation_freed"})
	case vram.ReasonIntegrityViolation:
		return s.emit(ctx, audit.IntegrityViolationFields{ResourceType: "vram_copy",
			ResourceID: m.ShardID + " (" + m.Path + ")", ExpectedHash: f.ExpectedSHA256,
			ActualHash: f.ActualSHA256, ActionTaken: "allocation_freed"})
	case vram.ReasonPathTraversal:
		// The loader checked this path at start; at the copy it leads
		// elsewhere (a symlink swapped in since, say).
		return s.emit(ctx, pathTraversal(m, f.AllowedRoots))
	case vram.ReasonTooLarge:
		return s.emit(ctx, modelTooLarge(f.Limit, f.Actual))
	}
	return nil
}

// VerifyAll checks every seal once, recording each outcome; a failed seal
// is released or kept as verify.on_failure says.
func (s *Shards) VerifyAll(ctx context.Context) error {
	var errs []error
	for _, sh := range s.Sealed() {
		if !vram.SignatureValid(s.opts.Key, &sh) {
			// The host's own record was changed: trust nothing of it.
			s.noteVerified(sh.ShardID, vram.VerifySignatureInvalid.String())
			errs = append(errs, s.failed(ctx, sh, vram.Verification{Result: vram.VerifySignatureInvalid, Expected: sh.Digest}))
			continue
		}
		v, err := s.vb.Verify(ctx, sh)
		if err != nil {
			s.count("ERROR", 0)
			s.log.Error("seal verification did not run", "shard", sh.ShardID, "error", err)
			continue
		}
		// The backend's own verdict is not taken: the host compares the
		// digest it read back with the sealed one.
		if v.Result == vram.VerifyOK || v.Result == vram.VerifyDigestMismatch {
			v.Result = vram.VerifyDigestMismatch
			if subtle.ConstantTimeCompare(v.Actual[:], sh.Digest[:]) == 1 {
				v.Result = vram.VerifyOK
			}
		}
		s.count(v.Result.String(), v.Duration)
		s.noteVerified(sh.ShardID, v.Result.String())
		if v.Result == vram.VerifyOK {
			if err := s.emit(ctx, audit.SealVerifiedFields{ShardID: sh.ShardID, GPUDevice: uint64(sh.Device)}); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		errs = append(errs, s.failed(ctx, sh, v))
	}
	s.refreshStats(ctx)
	return errors.Join(errs...)
}

func (s *Shards) count(result string, d time.Duration) {
	if s.m == nil {
		return
	}
	s.m.verifications.WithLabelValues(result).Inc()
	if d > 0 {
		s.m.verifyTime.Observe(d.Seconds())
	}
}

func (s *Shards) failed(ctx context.Context, sh vram.SealedShard, v vram.Verification) error {
	action := ActionKept
	if s.onFailure == "release" && v.Result != vram.VerifyNotResident {
		action = ActionReleased
	}
	actual := ""
	if v.Result == vram.VerifyDigestMismatch {
		actual = hex.EncodeToString(v.Actual[:])
	}
	s.log.Error("SEAL VERIFICATION FAILED", "shard", sh.ShardID, "result", v.Result, "action", action)
	err := s.emit(ctx, audit.SealVerificationFailedFields{ShardID: sh.ShardID, Reason: v.Result.String(),
		ExpectedDigest: hex.EncodeToString(sh.Digest[:]), ActualDigest: actual, ActionTaken: action})
	if v.Result == vram.VerifyNotResident {
		s.mu.Lock()
		delete(s.sealed, sh.ShardID)
		s.mu.Unlock()
		return err
	}
	if action == ActionReleased {
		return errors.Join(err, s.release(ctx, sh))
	}
	return err
}

func (s *Shards) release(ctx context.Context, sh vram.SealedShard) error {
	freed, used, err := s.vb.Release(ctx, sh.ShardID)
	s.mu.Lock()
	delete(s.sealed, sh.ShardID)
	s.mu.Unlock()
	if err != nil {
		s.log.Error("release failed", "shard", sh.ShardID, "error", err)
		return nil
	}
	return s.emit(ctx, audit.VramDeallocatedFields{ShardID: sh.ShardID, FreedBytes: freed,
		RemainingUsed: used, GPUDevice: uint64(sh.Device)})
}

// ReleaseAll frees every shard (at shutdown), recording each.
func (s *Shards) ReleaseAll(ctx context.Context) error {
	var errs []error
	for _, sh := range s.Sealed() {
		errs = append(errs, s.release(ctx, sh))
	}
	s.refreshStats(ctx)
	return errors.Join(errs...)
}

func (s *Shards) refreshStats(ctx context.Context) {
	st, err := s.vb.Stats(ctx)
	if err != nil {
		s.log.Warn("device stats unavailable", "error", err)
		return
	}
	s.m.devices(st)
}
