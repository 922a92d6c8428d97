package models

import (
	"context"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vramward/vramward/host/config"
	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/loader"
	"github.com/vramward/vramward/sdk/vram"
)

// fakeVram is a backend that reports a correct seal unless forge changes
// it, and reads back the sealed digest unless verify says otherwise.
type fakeVram struct {
	loadErr  map[string]error
	verify   map[string]vram.VerifyResult
	forge    func(*vram.SealedShard)
	released []string
}

var sealedDigest = [32]byte{1, 2, 3}

func (f *fakeVram) LoadAndSeal(_ context.Context, _, _, id string, dev uint32) (*vram.Loaded, error) {
	if err := f.loadErr[id]; err != nil {
		return nil, err
	}
	sh := vram.SealedShard{ShardID: id, Device: dev, Backend: vram.BackendEmulated, Bytes: 10, LeafBytes: vram.LeafBytes, Digest: sealedDigest}
	sum, _ := hex.DecodeString(fileSHA)
	copy(sh.FileSHA256[:], sum)
	if f.forge != nil {
		f.forge(&sh)
	}
	return &vram.Loaded{Shard: sh, AllocatedBytes: 10}, nil
}

// Verify answers as a lying backend would: OK with whatever digest it read.
func (f *fakeVram) Verify(_ context.Context, s vram.SealedShard) (vram.Verification, error) {
	r, ok := f.verify[s.ShardID]
	if !ok {
		r = vram.VerifyOK
	}
	v := vram.Verification{Result: r, Expected: s.Digest, Actual: s.Digest}
	if r == vram.VerifyDigestMismatch {
		v.Actual[0] ^= 0xff
	}
	return v, nil
}

func (f *fakeVram) Release(_ context.Context, id string) (uint64, uint64, error) {
	f.released = append(f.released, id)
	return 10, 0, nil
}

func (f *fakeVram) Stats(context.Context) ([]vram.DeviceStats, error) {
	return []vram.DeviceStats{{Device: vram.Device{Index: 0, UUID: "EMULATED-0", Backend: vram.BackendEmulated, TotalBytes: 100}, UsedBytes: 10, SealedBytes: 10, Shards: 1}}, nil
}

func types(r *recorder) []audit.Type {
	var out []audit.Type
	for _, e := range r.events {
		out = append(out, e.Type)
	}
	return out
}

func TestLoadRecordsEachRefusal(t *testing.T) {
	models := map[string]error{
		"ok":  nil,
		"oom": &vram.Failure{Reason: vram.ReasonAllocationFailed, RequestedBytes: 10, AvailableBytes: 5},
		"pol": &vram.Failure{Reason: vram.ReasonPolicyViolation, Policy: "p", Violation: "managed"},
		"int": &vram.Failure{Reason: vram.ReasonIntegrityViolation, ExpectedSHA256: "aa", ActualSHA256: "bb"},
		"io":  &vram.Failure{Reason: vram.ReasonIOError},
	}
	fv := &fakeVram{loadErr: models}
	var checked []Result
	for _, id := range []string{"ok", "oom", "pol", "int", "io"} {
		checked = append(checked, Result{Model: &config.Model{Name: id, ShardID: id, Path: "/m/" + id}, Loaded: &loader0})
	}
	checked = append(checked, Result{Model: &config.Model{Name: "refused"}, Err: errors.New("refused by the loader")})
	rec := &recorder{}
	m, _ := NewMetrics(prometheus.NewRegistry())
	s := NewShards(fv, rec, m, sealOpts("release"), hclog.NewNullLogger())
	if err := s.Load(context.Background(), checked); err != nil {
		t.Fatal(err)
	}
	want := []audit.Type{audit.VramAllocated, audit.VramSealed, audit.VramAllocationFailed, audit.PolicyViolation, audit.IntegrityViolation}
	if got := types(rec); len(got) != len(want) {
		t.Fatalf("events %v, want %v", got, want)
	} else {
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("events %v, want %v", got, want)
			}
		}
	}
	if len(s.Sealed()) != 1 {
		t.Fatalf("%d shards held", len(s.Sealed()))
	}
}

func TestVerifyFailureReleasesOrKeeps(t *testing.T) {
	for _, policy := range []string{"release", "keep"} {
		fv := &fakeVram{verify: map[string]vram.VerifyResult{"bad": vram.VerifyDigestMismatch}}
		rec := &recorder{}
		s := NewShards(fv, rec, nil, sealOpts(policy), hclog.NewNullLogger())
		checked := []Result{{Model: &config.Model{ShardID: "good"}, Loaded: &loader0}, {Model: &config.Model{ShardID: "bad"}, Loaded: &loader0}}
		_ = s.Load(context.Background(), checked)
		rec.events = nil
		if err := s.VerifyAll(context.Background()); err != nil {
			t.Fatal(err)
		}
		got := types(rec)
		wantLen := 2
		if policy == "release" {
			wantLen = 3
		}
		if len(got) != wantLen || got[0] != audit.SealVerificationFailed || got[len(got)-1] == audit.SealVerificationFailed && policy == "release" {
			t.Fatalf("%s: events %v", policy, got)
		}
		held := len(s.Sealed())
		if (policy == "release" && held != 1) || (policy == "keep" && held != 2) {
			t.Fatalf("%s: %d shards held", policy, held)
		}
	}
}

func sealOpts(onFailure string) SealOptions {
	key, _ := vram.DeriveSealKey([]byte("worker-token-for-the-tests-0123"))
	return SealOptions{Key: key, WorkerID: "w1", OnFailure: onFailure}
}

// TestForgedSealFieldsAreRefused: a backend that reports a seal other than
// the one asked for, in any field, gets PolicyViolation (CRITICAL) and its
// shard released; nothing is sealed. With require_backend = "cuda", an
// emulated seal is refused the same way.
func TestForgedSealFieldsAreRefused(t *testing.T) {
	cases := map[string]func(*vram.SealedShard){
		"another shard id":               func(s *vram.SealedShard) { s.ShardID = "other" },
		"another device":                 func(s *vram.SealedShard) { s.Device = 7 },
		"another file":                   func(s *vram.SealedShard) { s.FileSHA256[0] ^= 1 },
		"another size":                   func(s *vram.SealedShard) { s.Bytes = 11 },
		"another leaf size":              func(s *vram.SealedShard) { s.LeafBytes = 4 << 20 },
		"unknown backend":                func(s *vram.SealedShard) { s.Backend = "quantum" },
		"no digest":                      func(s *vram.SealedShard) { s.Digest = [32]byte{} },
		"emulated when cuda is required": func(*vram.SealedShard) {},
	}
	for name, forge := range cases {
		t.Run(name, func(t *testing.T) {
			fv := &fakeVram{forge: forge}
			rec := &recorder{}
			opts := sealOpts("release")
			if name == "emulated when cuda is required" {
				opts.RequireBackend = vram.BackendCUDA
			}
			s := NewShards(fv, rec, nil, opts, hclog.NewNullLogger())
			_ = s.Load(context.Background(), []Result{{Model: &config.Model{Name: "m", ShardID: "m:0"}, Loaded: &loader0}})
			got := types(rec)
			if len(got) != 1 || got[0] != audit.PolicyViolation || rec.events[0].Severity != audit.Critical {
				t.Fatalf("events %v", got)
			}
			if len(s.Sealed()) != 0 || len(fv.released) != 1 {
				t.Fatalf("%d shards sealed, %v released", len(s.Sealed()), fv.released)
			}
		})
	}
	// The honest case, for contrast: sealed by the host, with its key.
	fv := &fakeVram{}
	rec := &recorder{}
	opts := sealOpts("release")
	s := NewShards(fv, rec, nil, opts, hclog.NewNullLogger())
	_ = s.Load(context.Background(), []Result{{Model: &config.Model{Name: "m", ShardID: "m:0"}, Loaded: &loader0}})
	sealed := s.Sealed()
	if len(sealed) != 1 || sealed[0].WorkerID != "w1" || !vram.SignatureValid(opts.Key, &sealed[0]) {
		t.Fatalf("honest seal: %+v", sealed)
	}
}

// TestBackendVerdictIsNotTaken: a backend that answers Verify with OK and a
// digest other than the sealed one is a DIGEST_MISMATCH for the host.
func TestBackendVerdictIsNotTaken(t *testing.T) {
	fv := &fakeVram{}
	rec := &recorder{}
	s := NewShards(&lyingVerify{fv}, rec, nil, sealOpts("release"), hclog.NewNullLogger())
	_ = s.Load(context.Background(), []Result{{Model: &config.Model{Name: "m", ShardID: "m:0"}, Loaded: &loader0}})
	rec.events = nil
	_ = s.VerifyAll(context.Background())
	if got := types(rec); len(got) == 0 || got[0] != audit.SealVerificationFailed {
		t.Fatalf("events %v", got)
	}
}

type lyingVerify struct{ *fakeVram }

func (l *lyingVerify) Verify(_ context.Context, s vram.SealedShard) (vram.Verification, error) {
	return vram.Verification{Result: vram.VerifyOK, Expected: s.Digest, Actual: [32]byte{9}}, nil
}

// TestTooLargeAtTheCopyReadsAsAtTheCheck: a model over max_file_bytes is
// recorded with the same fields and action whether the loader refused it
// or the VRAM backend did at the copy (they had drifted: load_refused and
// not_loaded).
func TestTooLargeAtTheCopyReadsAsAtTheCheck(t *testing.T) {
	m := &config.Model{Name: "big", ShardID: "big", Path: "/m/big"}
	fv := &fakeVram{loadErr: map[string]error{"big": &vram.Failure{Reason: vram.ReasonTooLarge, Limit: 10, Actual: 11}}}
	rec := &recorder{}
	metrics, _ := NewMetrics(prometheus.NewRegistry())
	s := NewShards(fv, rec, metrics, sealOpts("release"), hclog.NewNullLogger())
	if err := s.Load(context.Background(), []Result{{Model: m, Loaded: &loader0}}); err != nil {
		t.Fatal(err)
	}
	atCheck, _, err := ModelEvent(m, nil, &loader.Rejection{Reason: loader.ReasonTooLarge, Limit: 10, Actual: 11})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.events) != 1 || rec.events[0].Type != audit.ResourceLimitViolation {
		t.Fatalf("events %v", types(rec))
	}
	got, want := rec.events[0].Fields, atCheck.Fields
	if len(got) != len(want) {
		t.Fatalf("fields %v, at the check %v", got, want)
	}
	for i := range want {
		if got[i].Key != want[i].Key || !got[i].Value.Equal(want[i].Value) {
			t.Fatalf("field %s = %v at the copy, %s = %v at the check", got[i].Key, got[i].Value, want[i].Key, want[i].Value)
		}
	}
}
