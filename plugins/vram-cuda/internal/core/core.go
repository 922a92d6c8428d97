// Package core is the vram-cuda plugin's Backend: the load, read-back and
// release of shards over a gpu.Driver, the same code for the cuda and the
// emulated driver. The seal itself (SHA-256 check, signature, digest
// compare) is the SDK's (sdk/vram).
package core

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"github.com/vramward/vramward/sdk/sandbox"
	"io"
	"os"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/hashicorp/go-hclog"

	"github.com/vramward/vramward/plugins/vram-cuda/gpu"
	"github.com/vramward/vramward/plugins/vram-cuda/internal/telemetry"
	"github.com/vramward/vramward/sdk/schema"
	"github.com/vramward/vramward/sdk/version"
	"github.com/vramward/vramward/sdk/vram"
)

// Config defaults.
const (
	DefaultBackend             = "cuda"
	DefaultEmulatedDevices     = 1
	DefaultEmulatedDeviceBytes = 16 << 30
)

// Schema is the plugin's config block.
var Schema = schema.Schema{
	{Name: "backend", Type: schema.String, Default: DefaultBackend,
		Description: "cuda (a GPU through the CUDA driver), emulated (host memory, never real residency) or auto (cuda when a device is there, else emulated with a warning)"},
	{Name: "emulated_devices", Type: schema.Int, Default: int64(DefaultEmulatedDevices), Description: "emulated: how many devices"},
	{Name: "emulated_device_bytes", Type: schema.Int, Default: int64(DefaultEmulatedDeviceBytes), Description: "emulated: memory of each device, in bytes"},
}

// OpenCUDA opens the CUDA driver; tests replace it.
var OpenCUDA = gpu.OpenCUDA

// OpenNVML opens NVML for device telemetry; tests replace it.
var OpenNVML = func() *telemetry.NVML { return telemetry.Open(nvml.New()) }

type shard struct {
	dev   gpu.Device
	ptr   gpu.Ptr
	bytes uint64
	// mu: a digest reads the memory while Release would free it.
	mu    sync.RWMutex
	freed bool
}

// Core implements vram.Backend.
type Core struct {
	// ExtraSandbox is added to SandboxRules (a test build's control
	// directory); set before serving.
	ExtraSandbox sandbox.Rules

	log hclog.Logger
	drv gpu.Driver
	// nvml, for a GPU backend, gives device-wide memory figures (other
	// processes included); nil or unavailable means the driver's own.
	nvml *telemetry.NVML

	mu     sync.Mutex
	shards map[string]*shard
}

var _ vram.Backend = (*Core)(nil)

// New returns an unconfigured backend.
func New(logger hclog.Logger) *Core {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Core{log: logger, shards: map[string]*shard{}}
}

// Info implements vram.Backend.
func (c *Core) Info() vram.Info {
	return vram.Info{Name: "vram-cuda", Version: version.Version, Schema: Schema}
}

// Configure implements vram.Backend.
func (c *Core) Configure(_ context.Context, cfg schema.Values) (string, error) {
	n, size := cfg.Int("emulated_devices"), cfg.Int("emulated_device_bytes")
	var errs schema.Errors
	if n < 1 || n > 64 {
		errs = append(errs, &schema.FieldError{Field: "emulated_devices", Msg: fmt.Sprintf("must be 1 to 64, got %d", n)})
	}
	if size < 1<<20 {
		errs = append(errs, &schema.FieldError{Field: "emulated_device_bytes", Msg: fmt.Sprintf("must be at least 1 MiB, got %d", size)})
	}
	if len(errs) > 0 {
		return "", errs
	}
	switch b := cfg.String("backend"); b {
	case "cuda":
		drv, err := OpenCUDA()
		if err != nil {
			return "", vram.Fail(vram.ReasonBackendUnavailable, "backend \"cuda\": %v (set backend = \"emulated\" on a machine without a GPU)", err)
		}
		c.drv = drv
	case "emulated":
		c.drv = gpu.NewEmulated(int(n), uint64(size))
		c.log.Warn("EMULATED backend: shards live in host memory; seals say so and prove no GPU residency")
	case "auto":
		drv, err := OpenCUDA()
		if err != nil {
			c.log.Warn("no CUDA device; falling back to the EMULATED backend (host memory, no GPU residency)", "why", err)
			c.drv = gpu.NewEmulated(int(n), uint64(size))
		} else {
			c.drv = drv
		}
	default:
		return "", &schema.FieldError{Field: "backend", Msg: fmt.Sprintf("want cuda, emulated or auto, got %q", b)}
	}
	if c.drv.Backend() == vram.BackendCUDA {
		c.nvml = OpenNVML()
		if !c.nvml.Available() {
			c.log.Warn("NVML unavailable: device telemetry comes from the CUDA driver only", "why", c.nvml.Unavailable)
		}
	}
	c.log.Info("configured", "backend", c.drv.Backend(), "devices", len(c.drv.Devices()))
	return c.drv.Backend(), nil
}

// SandboxRules implements sandbox.Sandboxed (the SDK adds the model roots,
// a test build its control directory through ExtraSandbox).
// The emulated backend needs nothing more. What the CUDA driver and NVML
// open has not been traced on a GPU node yet, so the cuda backend's
// allowance is generous: the device nodes read-write (with ioctls), the
// driver's libraries, /proc and /sys read-only; no file write anywhere.
func (c *Core) SandboxRules() sandbox.Rules {
	r := c.ExtraSandbox
	if c.drv == nil || c.drv.Backend() != vram.BackendCUDA {
		return r
	}
	r.Devices = append(r.Devices, "/dev")
	r.ReadDirs = append(r.ReadDirs, "/usr", "/lib", "/lib64", "/etc", "/opt", "/proc", "/sys", "/run/nvidia", "/var/run/nvidia-persistenced")
	return r
}

func (c *Core) device(index uint32) (gpu.Device, error) {
	devs := c.drv.Devices()
	if int(index) >= len(devs) {
		return nil, vram.Fail(vram.ReasonDeviceNotFound, "device %d: the %s backend has %d devices", index, c.drv.Backend(), len(devs))
	}
	return devs[index], nil
}

func (c *Core) describe(d gpu.Device) (vram.Device, error) {
	free, total, err := d.MemInfo()
	v := vram.Device{Index: uint32(d.Index()), Name: d.Name(), UUID: d.UUID(), TotalBytes: total, FreeBytes: free, Backend: c.drv.Backend()}
	if c.nvml != nil && c.nvml.Available() {
		if t, ok := c.nvml.ByUUID(d.UUID()); ok {
			v.Name, v.TotalBytes, v.FreeBytes = t.Name, t.TotalBytes, t.Free
			err = nil
		}
	}
	return v, err
}

// Devices implements vram.Backend.
func (c *Core) Devices(context.Context) ([]vram.Device, error) {
	var out []vram.Device
	for _, d := range c.drv.Devices() {
		v, err := c.describe(d)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// Load implements vram.Backend: the file is read once, each chunk hashed
// and copied to the device as it is read.
func (c *Core) Load(ctx context.Context, f *os.File, id string, index uint32) (res vram.Resident, err error) {
	dev, err := c.device(index)
	if err != nil {
		return res, err
	}
	st, err := f.Stat()
	if err != nil {
		return res, vram.Fail(vram.ReasonIOError, "stat the model: %v", err)
	}
	size := st.Size()
	if !st.Mode().IsRegular() || size == 0 {
		return res, vram.Fail(vram.ReasonInvalidArgument, "the model is not a non-empty regular file")
	}
	// Reserve the id first, so two loads of one shard cannot race.
	sh := &shard{dev: dev, bytes: uint64(size)}
	c.mu.Lock()
	if _, dup := c.shards[id]; dup {
		c.mu.Unlock()
		return res, vram.Fail(vram.ReasonShardExists, "shard %s is already loaded; release it first", id)
	}
	c.shards[id] = sh
	c.mu.Unlock()
	defer func() {
		if err != nil {
			c.forget(id, sh)
		}
	}()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.ptr, err = dev.Alloc(uint64(size)); err != nil {
		var oom *gpu.OutOfMemory
		if errors.As(err, &oom) {
			return res, &vram.Failure{Reason: vram.ReasonAllocationFailed, Msg: err.Error(), RequestedBytes: oom.Requested, AvailableBytes: oom.Available}
		}
		return res, vram.Fail(vram.ReasonAllocationFailed, "allocate %d bytes: %v", size, err)
	}
	if err := c.checkPolicy(dev, sh.ptr); err != nil {
		return res, err
	}
	sum, err := c.copyIn(ctx, f, dev, sh.ptr, uint64(size))
	if err != nil {
		return res, err
	}
	free, total, err := dev.MemInfo()
	if err != nil {
		return res, err
	}
	return vram.Resident{Device: index, DeviceUUID: dev.UUID(), Backend: c.drv.Backend(), Bytes: uint64(size),
		FileSHA256: sum, FreeBytes: free, UsedBytes: total - free}, nil
}

// checkPolicy insists on plain device memory on the requested device:
// managed memory can report "device" and migrate to the host, so both
// attributes are checked.
func (c *Core) checkPolicy(dev gpu.Device, p gpu.Ptr) error {
	info, err := dev.Pointer(p)
	if err != nil {
		return vram.Fail(vram.ReasonPolicyViolation, "the driver cannot say what memory the allocation is: %v", err)
	}
	violation := ""
	switch {
	case info.Managed:
		violation = "managed (unified) memory"
	case info.Type != gpu.MemoryDevice:
		violation = info.Type.String() + " memory"
	case info.Device != dev.Index():
		violation = fmt.Sprintf("memory on device %d", info.Device)
	}
	if violation == "" {
		return nil
	}
	return &vram.Failure{Reason: vram.ReasonPolicyViolation, Policy: "device_memory_on_requested_device",
		Violation: violation, Msg: fmt.Sprintf("the allocation is %s, not device memory on device %d", violation, dev.Index())}
}

// copyIn streams size bytes of f into p, hashing them. A reader goroutine
// fills the next buffer while this one is hashed and copied.
func (c *Core) copyIn(ctx context.Context, f *os.File, dev gpu.Device, p gpu.Ptr, size uint64) ([32]byte, error) {
	var sum [32]byte
	h := sha256.New()
	chunk := c.drv.ChunkBytes()
	type block struct {
		buf []byte
		n   int
		err error
	}
	free := make(chan []byte, 2)
	full := make(chan block, 2)
	free <- make([]byte, chunk)
	free <- make([]byte, chunk)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		defer close(full)
		var off int64
		for {
			var buf []byte
			select {
			case buf = <-free:
			case <-stop:
				return
			}
			n, err := f.ReadAt(buf, off)
			off += int64(n)
			if errors.Is(err, io.EOF) {
				err = nil
				if n == 0 {
					return
				}
			}
			select {
			case full <- block{buf, n, err}:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	var done uint64
	for b := range full {
		if b.err != nil {
			return sum, vram.Fail(vram.ReasonIOError, "read at %d: %v", done, b.err)
		}
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		if done+uint64(b.n) > size {
			return sum, vram.Fail(vram.ReasonIOError, "the file grew while it was read (more than %d bytes)", size)
		}
		h.Write(b.buf[:b.n])
		if err := dev.CopyHtoD(p, done, b.buf[:b.n]); err != nil {
			return sum, vram.Fail(vram.ReasonIOError, "copy to the device at %d: %v", done, err)
		}
		done += uint64(b.n)
		free <- b.buf
	}
	if done != size {
		return sum, vram.Fail(vram.ReasonIOError, "the file shrank while it was read: %d of %d bytes", done, size)
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// forget frees what a failed load allocated and drops its id.
func (c *Core) forget(id string, sh *shard) {
	if sh.ptr != 0 {
		if err := sh.dev.Free(sh.ptr); err != nil {
			c.log.Error("free after a failed load", "shard", id, "error", err)
		}
		sh.ptr = 0
	}
	c.mu.Lock()
	if c.shards[id] == sh {
		delete(c.shards, id)
	}
	c.mu.Unlock()
}

func (c *Core) lookup(id string) (*shard, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sh, ok := c.shards[id]
	if !ok {
		return nil, &vram.Failure{Reason: vram.ReasonShardNotFound, Msg: fmt.Sprintf("no shard %s is resident", id)}
	}
	return sh, nil
}

// Digest implements vram.Backend: the bytes are copied back from the
// device chunk by chunk while the previous chunk is hashed on every core.
func (c *Core) Digest(ctx context.Context, id string) ([32]byte, error) {
	sh, err := c.lookup(id)
	if err != nil {
		return [32]byte{}, err
	}
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if sh.freed || sh.ptr == 0 {
		return [32]byte{}, &vram.Failure{Reason: vram.ReasonShardNotFound, Msg: fmt.Sprintf("shard %s is not resident", id)}
	}
	return readBackDigest(ctx, sh.dev, sh.ptr, sh.bytes, c.drv.ChunkBytes())
}

func readBackDigest(ctx context.Context, dev gpu.Device, p gpu.Ptr, size uint64, chunkBytes int) ([32]byte, error) {
	chunk := uint64(max(chunkBytes/vram.LeafBytes, 1) * vram.LeafBytes)
	t := vram.NewTreeHasher(vram.LeafBytes, 0)
	if v, ok := dev.(gpu.Viewer); ok {
		// Memory the host can read in place is hashed where it lies.
		for off := uint64(0); off < size; off += chunk {
			b, err := v.View(p, off, int(min(chunk, size-off)))
			if err != nil {
				return [32]byte{}, vram.Fail(vram.ReasonIOError, "read the device memory: %v", err)
			}
			if err := ctx.Err(); err != nil {
				return [32]byte{}, err
			}
			t.Write(b)
		}
		return t.Sum(), nil
	}
	type block struct {
		buf []byte
		err error
	}
	bufs := make(chan []byte, 2)
	full := make(chan block, 1)
	bufs <- make([]byte, chunk)
	bufs <- make([]byte, chunk)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		defer close(full)
		for off := uint64(0); off < size; off += chunk {
			var buf []byte
			select {
			case buf = <-bufs:
			case <-stop:
				return
			}
			n := min(chunk, size-off)
			err := dev.CopyDtoH(buf[:n], p, off)
			select {
			case full <- block{buf[:n], err}:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for b := range full {
		if b.err != nil {
			return [32]byte{}, vram.Fail(vram.ReasonIOError, "copy from the device: %v", b.err)
		}
		if err := ctx.Err(); err != nil {
			return [32]byte{}, err
		}
		t.Write(b.buf)
		bufs <- b.buf[:cap(b.buf)]
	}
	return t.Sum(), nil
}

// Release implements vram.Backend.
func (c *Core) Release(_ context.Context, id string) (uint64, uint64, error) {
	sh, err := c.lookup(id)
	if err != nil {
		return 0, 0, err
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.freed {
		return 0, 0, &vram.Failure{Reason: vram.ReasonShardNotFound, Msg: fmt.Sprintf("shard %s is already released", id)}
	}
	if sh.ptr != 0 {
		if err := sh.dev.Free(sh.ptr); err != nil {
			return 0, 0, vram.Fail(vram.ReasonIOError, "free shard %s: %v", id, err)
		}
	}
	sh.freed, sh.ptr = true, 0
	c.mu.Lock()
	delete(c.shards, id)
	c.mu.Unlock()
	free, total, err := sh.dev.MemInfo()
	if err != nil {
		return sh.bytes, 0, err
	}
	return sh.bytes, total - free, nil
}

// Stats implements vram.Backend.
func (c *Core) Stats(context.Context) ([]vram.DeviceStats, error) {
	var out []vram.DeviceStats
	for _, d := range c.drv.Devices() {
		v, err := c.describe(d)
		if err != nil {
			return nil, err
		}
		st := vram.DeviceStats{Device: v, UsedBytes: v.TotalBytes - v.FreeBytes}
		c.mu.Lock()
		for _, sh := range c.shards {
			if sh.dev == d {
				st.Shards++
				st.SealedBytes += sh.bytes
			}
		}
		c.mu.Unlock()
		out = append(out, st)
	}
	return out, nil
}

// Close implements vram.Backend: every shard is freed.
func (c *Core) Close() error {
	if c.drv == nil {
		return nil
	}
	c.mu.Lock()
	ids := make([]string, 0, len(c.shards))
	for id := range c.shards {
		ids = append(ids, id)
	}
	c.mu.Unlock()
	var errs []error
	for _, id := range ids {
		if _, _, err := c.Release(context.Background(), id); err != nil {
			errs = append(errs, err)
		}
	}
	if c.nvml != nil {
		c.nvml.Close()
	}
	return errors.Join(append(errs, c.drv.Close())...)
}
