package worker

import (
	"context"
	"errors"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vramward/vramward/host/config"
	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/vram"
)

type fakeVram struct {
	loadErr map[string]error
	verify  map[string]vram.VerifyResult
}

func (f *fakeVram) LoadAndSeal(_ context.Context, _, _, id string, dev uint32) (*vram.Loaded, error) {
	if err := f.loadErr[id]; err != nil {
		return nil, err
	}
	return &vram.Loaded{Shard: vram.SealedShard{ShardID: id, Device: dev, Backend: vram.BackendEmulated, Bytes: 10}, AllocatedBytes: 10}, nil
}

func (f *fakeVram) Verify(_ context.Context, s vram.SealedShard) (vram.Verification, error) {
	r, ok := f.verify[s.ShardID]
	if !ok {
		r = vram.VerifyOK
	}
	return vram.Verification{Result: r, Expected: s.Digest}, nil
}

func (f *fakeVram) Release(context.Context, string) (uint64, uint64, error) { return 10, 0, nil }

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
	s := NewShards(fv, rec, m, "release", hclog.NewNullLogger())
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
		s := NewShards(fv, rec, nil, policy, hclog.NewNullLogger())
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
