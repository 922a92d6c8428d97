package vram

import (
	"context"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vramward/vramward/sdk/internal/bounded"
	vramv1 "github.com/vramward/vramward/sdk/proto/vram/v1"
)

// Client is the host's side of one VRAM backend plugin. Every failure it
// returns is a *Failure; transport failures and crashes are
// ReasonUnavailable.
type Client struct {
	rpc vramv1.VramBackendClient
	log hclog.Logger

	sandbox bounded.SandboxReport
}

// NewClient wraps a connection's VramBackend client.
func NewClient(rpc vramv1.VramBackendClient, logger hclog.Logger) *Client {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Client{rpc: rpc, log: logger}
}

// Info asks for the backend's name, version and config schema.
func (c *Client) Info(ctx context.Context) (Info, error) {
	resp, err := c.rpc.Info(ctx, &vramv1.InfoRequest{})
	if err != nil {
		return Info{}, fromStatus("info", err)
	}
	sch, err := bounded.PluginInfo(resp.GetName(), resp.GetVersion(), resp.GetConfigSchema())
	if err != nil {
		return Info{}, &Failure{Op: "info", Reason: ReasonUnavailable, Msg: err.Error()}
	}
	return Info{Name: resp.GetName(), Version: resp.GetVersion(), Schema: sch}, nil
}

// Configure sends the config block and where models may be opened; it
// returns the backend in use.
func (c *Client) Configure(ctx context.Context, configJSON []byte, models Models) (string, error) {
	resp, err := c.rpc.Configure(ctx, &vramv1.ConfigureRequest{ConfigJson: configJSON,
		AllowedRoots: models.AllowedRoots, MaxFileBytes: models.MaxFileBytes})
	if err != nil {
		return "", fromStatus("configure", err)
	}
	c.sandbox.Set(resp.GetSandboxed(), resp.GetSandbox())
	return resp.GetBackend(), nil
}

// Sandbox says whether the plugin restricted itself after Configure, and
// how (or why not).
func (c *Client) Sandbox() (bool, string) { return c.sandbox.Get() }

// Devices lists the devices.
func (c *Client) Devices(ctx context.Context) ([]Device, error) {
	resp, err := c.rpc.Devices(ctx, &vramv1.DevicesRequest{})
	if err != nil {
		return nil, fromStatus("devices", err)
	}
	var out []Device
	for _, d := range resp.GetDevices() {
		out = append(out, deviceFromProto(d))
	}
	return out, nil
}

// Loaded is a sealed shard and the device memory after its allocation.
type Loaded struct {
	Shard                                SealedShard
	AllocatedBytes, FreeBytes, UsedBytes uint64
}

// LoadAndSeal loads the file into device memory and seals it.
func (c *Client) LoadAndSeal(ctx context.Context, path, expectedSHA256, shardID string, device uint32) (*Loaded, error) {
	resp, err := c.rpc.LoadAndSeal(ctx, &vramv1.LoadAndSealRequest{Path: path, ExpectedSha256: expectedSHA256, ShardId: shardID, Device: device})
	if err != nil {
		return nil, fromStatus("load_and_seal", err)
	}
	s, err := shardFromProto(resp.GetShard())
	if err != nil {
		return nil, &Failure{Op: "load_and_seal", Reason: ReasonUnavailable, Msg: "the plugin answered a malformed shard: " + err.Error()}
	}
	return &Loaded{Shard: *s, AllocatedBytes: resp.GetAllocatedBytes(), FreeBytes: resp.GetFreeBytes(), UsedBytes: resp.GetUsedBytes()}, nil
}

// Verify checks a seal against device memory.
func (c *Client) Verify(ctx context.Context, shard SealedShard) (Verification, error) {
	resp, err := c.rpc.Verify(ctx, &vramv1.VerifyRequest{Shard: shardToProto(&shard)})
	if err != nil {
		return Verification{}, fromStatus("verify", err)
	}
	v := Verification{Expected: shard.Digest, Duration: time.Duration(resp.GetDurationNanos())}
	copy(v.Actual[:], resp.GetActualDigest())
	switch resp.GetResult() {
	case vramv1.VerifyResult_VERIFY_RESULT_OK:
		v.Result = VerifyOK
	case vramv1.VerifyResult_VERIFY_RESULT_DIGEST_MISMATCH:
		v.Result = VerifyDigestMismatch
	case vramv1.VerifyResult_VERIFY_RESULT_SIGNATURE_INVALID:
		v.Result = VerifySignatureInvalid
	case vramv1.VerifyResult_VERIFY_RESULT_NOT_RESIDENT:
		v.Result = VerifyNotResident
	default:
		return v, &Failure{Op: "verify", Reason: ReasonUnavailable, Msg: "the plugin answered no result"}
	}
	return v, nil
}

// Release frees a shard.
func (c *Client) Release(ctx context.Context, shardID string) (freed, used uint64, err error) {
	resp, err := c.rpc.Release(ctx, &vramv1.ReleaseRequest{ShardId: shardID})
	if err != nil {
		return 0, 0, fromStatus("release", err)
	}
	return resp.GetFreedBytes(), resp.GetUsedBytes(), nil
}

// Stats reports device memory and shards.
func (c *Client) Stats(ctx context.Context) ([]DeviceStats, error) {
	resp, err := c.rpc.Stats(ctx, &vramv1.StatsRequest{})
	if err != nil {
		return nil, fromStatus("stats", err)
	}
	var out []DeviceStats
	for _, d := range resp.GetDevices() {
		out = append(out, DeviceStats{Device: deviceFromProto(d.GetDevice()), UsedBytes: d.GetUsedBytes(), SealedBytes: d.GetSealedBytes(), Shards: d.GetShards()})
	}
	return out, nil
}
