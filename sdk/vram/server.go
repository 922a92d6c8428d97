package vram

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/vramward/vramward/sdk/confine"
	"github.com/vramward/vramward/sdk/sandbox"

	"github.com/hashicorp/go-hclog"

	"github.com/vramward/vramward/sdk/internal/hexdigest"
	vramv1 "github.com/vramward/vramward/sdk/proto/vram/v1"
	"github.com/vramward/vramward/sdk/schema"
	"github.com/vramward/vramward/sdk/version"
)

// server turns VramBackend RPCs into Backend primitives and owns the seal:
// the SHA-256 check (and the free on a mismatch), the signature, the
// signature check before a verify, the constant-time digest compare.
type server struct {
	vramv1.UnimplementedVramBackendServer

	b      Backend
	info   Info
	logger hclog.Logger
	now    func() time.Time

	mu         sync.RWMutex
	configured bool
	closed     bool
	backend    string
	// roots and maxFileBytes bound every model open (openModel).
	roots        *confine.Roots
	maxFileBytes uint64
}

func newServer(b Backend, logger hclog.Logger) *server {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	info := b.Info()
	if err := info.Schema.Check(); err != nil {
		panic(fmt.Sprintf("vram backend %q: %v", info.Name, err))
	}
	return &server{b: b, info: info, logger: logger, now: time.Now}
}

func (s *server) Info(context.Context, *vramv1.InfoRequest) (*vramv1.InfoResponse, error) {
	return &vramv1.InfoResponse{Name: s.info.Name, Version: s.info.Version, ConfigSchema: schema.ToProto(s.info.Schema), SdkVersion: version.SDK}, nil
}

func (s *server) Configure(ctx context.Context, req *vramv1.ConfigureRequest) (*vramv1.ConfigureResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.configured {
		return nil, (&Failure{Op: "configure", Reason: ReasonConfigured, Msg: "Configure is called once"}).toStatus()
	}
	var roots *confine.Roots
	if len(req.GetAllowedRoots()) > 0 {
		r, err := confine.New(req.GetAllowedRoots())
		if err != nil {
			return nil, (&Failure{Op: "configure", Reason: ReasonInvalidArgument, Msg: "allowed roots: " + err.Error()}).toStatus()
		}
		roots = r
	}
	vals, err := s.info.Schema.Decode(req.GetConfigJson())
	backend := ""
	if err == nil {
		backend, err = s.b.Configure(ctx, vals)
	}
	if err != nil {
		f := asFailure("configure", ReasonInvalidConfig, err)
		s.logger.Error("configure failed", "error", f)
		return nil, f.toStatus()
	}
	if backend != BackendCUDA && backend != BackendEmulated {
		return nil, (&Failure{Op: "configure", Reason: ReasonBackendUnavailable, Msg: fmt.Sprintf("backend reported %q, want cuda or emulated", backend)}).toStatus()
	}
	s.configured, s.backend = true, backend
	s.roots, s.maxFileBytes = roots, req.GetMaxFileBytes()
	// The model roots are the SDK's to open (openModel), whatever else the
	// backend needs.
	var extra sandbox.Rules
	if roots != nil {
		extra.ReadDirs = roots.Dirs()
	}
	sb := sandbox.Apply(s.b, extra)
	s.logger.Info("configured", "sandboxed", sb.Enforced, "sandbox", sb.Detail)
	return &vramv1.ConfigureResponse{Backend: backend, Sandboxed: sb.Enforced, Sandbox: sb.Detail}, nil
}

// openModel opens path beneath the allowed roots the host passed, as a
// regular non-empty file under the size cap: every model a backend reads
// comes through here, so a backend cannot open anything else by mistake.
func (s *server) openModel(path string) (*os.File, *Failure) {
	if s.roots == nil {
		return nil, &Failure{Reason: ReasonPathTraversal, Msg: "no allowed roots were configured: no model may be opened"}
	}
	f, err := s.roots.Open(path)
	var ce *confine.Error
	switch {
	case errors.As(err, &ce) && ce.Reason == confine.ReasonPathTraversal:
		return nil, &Failure{Reason: ReasonPathTraversal, Msg: ce.Msg, AllowedRoots: ce.Roots}
	case errors.As(err, &ce):
		return nil, &Failure{Reason: ReasonInvalidArgument, Msg: fmt.Sprintf("%s: %s", ce.Reason, ce.Msg)}
	case err != nil:
		return nil, &Failure{Reason: ReasonIOError, Msg: err.Error()}
	}
	if f.Size == 0 {
		f.Close()
		return nil, &Failure{Reason: ReasonInvalidArgument, Msg: "the model file is empty"}
	}
	if s.maxFileBytes > 0 && uint64(f.Size) > s.maxFileBytes {
		f.Close()
		return nil, &Failure{Reason: ReasonTooLarge, Msg: fmt.Sprintf("the model file is %d bytes; max_file_bytes is %d", f.Size, s.maxFileBytes),
			Limit: s.maxFileBytes, Actual: uint64(f.Size)}
	}
	return f.File, nil
}

func (s *server) ready(op string) (func(), *Failure) {
	s.mu.RLock()
	if !s.configured || s.closed {
		s.mu.RUnlock()
		return nil, &Failure{Op: op, Reason: ReasonNotConfigured, Msg: "Configure was not called, or the backend is closed"}
	}
	return s.mu.RUnlock, nil
}

func (s *server) Devices(ctx context.Context, _ *vramv1.DevicesRequest) (*vramv1.DevicesResponse, error) {
	done, f := s.ready("devices")
	if f != nil {
		return nil, f.toStatus()
	}
	defer done()
	devs, err := s.b.Devices(ctx)
	if err != nil {
		return nil, asFailure("devices", ReasonIOError, err).toStatus()
	}
	out := &vramv1.DevicesResponse{}
	for _, d := range devs {
		out.Devices = append(out.Devices, deviceToProto(d))
	}
	return out, nil
}

func (s *server) LoadAndSeal(ctx context.Context, req *vramv1.LoadAndSealRequest) (*vramv1.LoadAndSealResponse, error) {
	done, f := s.ready("load_and_seal")
	if f != nil {
		return nil, f.toStatus()
	}
	defer done()
	id, dev := req.GetShardId(), req.GetDevice()
	fail := func(f *Failure) error {
		f.Op, f.ShardID, f.Device = "load_and_seal", id, dev
		s.logger.Warn("load refused", "shard", id, "device", dev, "reason", f.Reason, "error", f.Msg)
		return f.toStatus()
	}
	if err := CheckShardID(id); err != nil {
		return nil, fail(&Failure{Reason: ReasonInvalidShardID, Msg: err.Error()})
	}
	want, err := hexdigest.Normalize(req.GetExpectedSha256())
	if err != nil {
		return nil, fail(&Failure{Reason: ReasonInvalidArgument, Msg: err.Error()})
	}
	wantRaw, _ := hex.DecodeString(want)
	model, f := s.openModel(req.GetPath())
	if f != nil {
		return nil, fail(f)
	}
	res, err := s.b.Load(ctx, model, id, dev)
	model.Close()
	if err != nil {
		return nil, fail(asFailure("load_and_seal", ReasonIOError, err))
	}
	if subtle.ConstantTimeCompare(res.FileSHA256[:], wantRaw) != 1 {
		s.release(ctx, id, "the copied bytes do not match the expected SHA-256")
		got := hex.EncodeToString(res.FileSHA256[:])
		return nil, fail(&Failure{Reason: ReasonIntegrityViolation, ExpectedSHA256: want, ActualSHA256: got,
			Msg: fmt.Sprintf("the bytes copied to the device hash to %s, expected %s; the memory was freed", got, want)})
	}
	digest, err := s.b.Digest(ctx, id)
	if err != nil {
		s.release(ctx, id, "the read-back failed")
		return nil, fail(asFailure("load_and_seal", ReasonIOError, err))
	}
	shard := &SealedShard{ShardID: id, Device: dev, DeviceUUID: res.DeviceUUID, Backend: res.Backend, Bytes: res.Bytes,
		Digest: digest, LeafBytes: LeafBytes, FileSHA256: res.FileSHA256, SealedAt: s.now().UTC()}
	if shard.Backend != s.backend {
		s.release(ctx, id, "the backend labelled the shard wrongly")
		return nil, fail(&Failure{Reason: ReasonBackendUnavailable, Msg: fmt.Sprintf("shard labelled %q by a %q backend", shard.Backend, s.backend)})
	}
	return &vramv1.LoadAndSealResponse{Shard: shardToProto(shard), AllocatedBytes: res.Bytes, FreeBytes: res.FreeBytes, UsedBytes: res.UsedBytes}, nil
}

// release frees a shard that must not stay, and says so if it cannot.
func (s *server) release(ctx context.Context, id, why string) {
	if _, _, err := s.b.Release(ctx, id); err != nil {
		s.logger.Error("could not free a refused shard", "shard", id, "why", why, "error", err)
	}
}

func (s *server) Verify(ctx context.Context, req *vramv1.VerifyRequest) (*vramv1.VerifyResponse, error) {
	done, f := s.ready("verify")
	if f != nil {
		return nil, f.toStatus()
	}
	defer done()
	start := s.now()
	shard, err := shardFromProto(req.GetShard())
	if err != nil {
		return nil, (&Failure{Op: "verify", Reason: ReasonInvalidArgument, Msg: err.Error()}).toStatus()
	}
	// The host checks the seal's signature and compares the digests
	// itself; this answer is the digest read back now.
	resp := &vramv1.VerifyResponse{ExpectedDigest: shard.Digest[:]}
	actual, err := s.b.Digest(ctx, shard.ShardID)
	switch {
	case errors.Is(err, ReasonShardNotFound):
		resp.Result = vramv1.VerifyResult_VERIFY_RESULT_NOT_RESIDENT
	case err != nil:
		return nil, asFailure("verify", ReasonIOError, err).toStatus()
	case subtle.ConstantTimeCompare(actual[:], shard.Digest[:]) == 1:
		resp.Result, resp.ActualDigest = vramv1.VerifyResult_VERIFY_RESULT_OK, actual[:]
	default:
		resp.Result, resp.ActualDigest = vramv1.VerifyResult_VERIFY_RESULT_DIGEST_MISMATCH, actual[:]
	}
	resp.DurationNanos = int64(s.now().Sub(start))
	return resp, nil
}

func (s *server) Release(ctx context.Context, req *vramv1.ReleaseRequest) (*vramv1.ReleaseResponse, error) {
	done, f := s.ready("release")
	if f != nil {
		return nil, f.toStatus()
	}
	defer done()
	if err := CheckShardID(req.GetShardId()); err != nil {
		return nil, (&Failure{Op: "release", Reason: ReasonInvalidShardID, Msg: err.Error()}).toStatus()
	}
	freed, used, err := s.b.Release(ctx, req.GetShardId())
	if err != nil {
		return nil, asFailure("release", ReasonIOError, err).toStatus()
	}
	return &vramv1.ReleaseResponse{FreedBytes: freed, UsedBytes: used}, nil
}

func (s *server) Stats(ctx context.Context, _ *vramv1.StatsRequest) (*vramv1.StatsResponse, error) {
	done, f := s.ready("stats")
	if f != nil {
		return nil, f.toStatus()
	}
	defer done()
	st, err := s.b.Stats(ctx)
	if err != nil {
		return nil, asFailure("stats", ReasonIOError, err).toStatus()
	}
	out := &vramv1.StatsResponse{}
	for _, d := range st {
		out.Devices = append(out.Devices, &vramv1.DeviceStats{Device: deviceToProto(d.Device), UsedBytes: d.UsedBytes, SealedBytes: d.SealedBytes, Shards: d.Shards})
	}
	return out, nil
}

func (s *server) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.b.Close()
}
