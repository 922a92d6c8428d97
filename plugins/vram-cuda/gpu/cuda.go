//go:build cgo

package gpu

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// The few CUDA driver API types and entry points used, declared here so
// that no CUDA toolkit is needed to build: the driver library is opened at
// run time. The versioned symbols are the ones cuda.h maps the plain names
// to.
typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext;
typedef unsigned long long CUdeviceptr;
typedef void *CUstream;
typedef void *CUevent;

static void *vw_lib;
static CUresult (*vw_cuInit)(unsigned int);
static CUresult (*vw_cuDeviceGetCount)(int *);
static CUresult (*vw_cuDeviceGet)(CUdevice *, int);
static CUresult (*vw_cuDeviceGetName)(char *, int, CUdevice);
static CUresult (*vw_cuDeviceGetUuid)(char *, CUdevice);
static CUresult (*vw_cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice);
static CUresult (*vw_cuDevicePrimaryCtxRelease)(CUdevice);
static CUresult (*vw_cuCtxSetCurrent)(CUcontext);
static CUresult (*vw_cuMemAlloc)(CUdeviceptr *, size_t);
static CUresult (*vw_cuMemFree)(CUdeviceptr);
static CUresult (*vw_cuMemcpyHtoD)(CUdeviceptr, const void *, size_t);
static CUresult (*vw_cuMemcpyDtoH)(void *, CUdeviceptr, size_t);
static CUresult (*vw_cuMemGetInfo)(size_t *, size_t *);
static CUresult (*vw_cuPointerGetAttribute)(void *, int, CUdeviceptr);
static CUresult (*vw_cuMemHostAlloc)(void **, size_t, unsigned int);
static CUresult (*vw_cuMemFreeHost)(void *);
static CUresult (*vw_cuGetErrorName)(CUresult, const char **);
static CUresult (*vw_cuStreamCreate)(CUstream *, unsigned int);
static CUresult (*vw_cuStreamSynchronize)(CUstream);
static CUresult (*vw_cuStreamDestroy)(CUstream);
static CUresult (*vw_cuEventCreate)(CUevent *, unsigned int);
static CUresult (*vw_cuEventRecord)(CUevent, CUstream);
static CUresult (*vw_cuEventSynchronize)(CUevent);
static CUresult (*vw_cuEventDestroy)(CUevent);
static CUresult (*vw_cuMemcpyHtoDAsync)(CUdeviceptr, const void *, size_t, CUstream);
static CUresult (*vw_cuMemcpyDtoHAsync)(void *, CUdeviceptr, size_t, CUstream);

#define VW_SYM(var, name) do { *(void **)(&var) = dlsym(vw_lib, name); if (!var) { return name; } } while (0)

// vw_open loads the driver and resolves every entry point; it returns the
// name of what is missing, or NULL.
static const char *vw_open(void) {
	if (vw_lib) return NULL;
	vw_lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!vw_lib) return "libcuda.so.1";
	VW_SYM(vw_cuInit, "cuInit");
	VW_SYM(vw_cuDeviceGetCount, "cuDeviceGetCount");
	VW_SYM(vw_cuDeviceGet, "cuDeviceGet");
	VW_SYM(vw_cuDeviceGetName, "cuDeviceGetName");
	VW_SYM(vw_cuDeviceGetUuid, "cuDeviceGetUuid");
	VW_SYM(vw_cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
	VW_SYM(vw_cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2");
	VW_SYM(vw_cuCtxSetCurrent, "cuCtxSetCurrent");
	VW_SYM(vw_cuMemAlloc, "cuMemAlloc_v2");
	VW_SYM(vw_cuMemFree, "cuMemFree_v2");
	VW_SYM(vw_cuMemcpyHtoD, "cuMemcpyHtoD_v2");
	VW_SYM(vw_cuMemcpyDtoH, "cuMemcpyDtoH_v2");
	VW_SYM(vw_cuMemGetInfo, "cuMemGetInfo_v2");
	VW_SYM(vw_cuPointerGetAttribute, "cuPointerGetAttribute");
	VW_SYM(vw_cuMemHostAlloc, "cuMemHostAlloc");
	VW_SYM(vw_cuMemFreeHost, "cuMemFreeHost");
	VW_SYM(vw_cuGetErrorName, "cuGetErrorName");
	VW_SYM(vw_cuStreamCreate, "cuStreamCreate");
	VW_SYM(vw_cuStreamSynchronize, "cuStreamSynchronize");
	VW_SYM(vw_cuStreamDestroy, "cuStreamDestroy_v2");
	VW_SYM(vw_cuEventCreate, "cuEventCreate");
	VW_SYM(vw_cuEventRecord, "cuEventRecord");
	VW_SYM(vw_cuEventSynchronize, "cuEventSynchronize");
	VW_SYM(vw_cuEventDestroy, "cuEventDestroy_v2");
	VW_SYM(vw_cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2");
	VW_SYM(vw_cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2");
	return NULL;
}

static const char *vw_dlerror(void) { const char *e = dlerror(); return e ? e : ""; }

static const char *vw_error_name(CUresult r) {
	const char *s = NULL;
	if (vw_cuGetErrorName && vw_cuGetErrorName(r, &s) == 0 && s) return s;
	return "CUDA_ERROR_UNKNOWN";
}

static CUresult vw_init(int *count) {
	CUresult r = vw_cuInit(0);
	if (r) return r;
	return vw_cuDeviceGetCount(count);
}

static CUresult vw_device(int ordinal, CUdevice *dev, CUcontext *ctx, char *name, int namelen, char *uuid) {
	CUresult r = vw_cuDeviceGet(dev, ordinal);
	if (r) return r;
	if ((r = vw_cuDeviceGetName(name, namelen, *dev))) return r;
	if ((r = vw_cuDeviceGetUuid(uuid, *dev))) return r;
	return vw_cuDevicePrimaryCtxRetain(ctx, *dev);
}

// Every call below makes the device's context current on the calling
// thread first: goroutines move between threads.
static CUresult vw_meminfo(CUcontext ctx, size_t *free, size_t *total) {
	CUresult r = vw_cuCtxSetCurrent(ctx);
	return r ? r : vw_cuMemGetInfo(free, total);
}
static CUresult vw_alloc(CUcontext ctx, CUdeviceptr *p, size_t n) {
	CUresult r = vw_cuCtxSetCurrent(ctx);
	return r ? r : vw_cuMemAlloc(p, n);
}
static CUresult vw_free(CUcontext ctx, CUdeviceptr p) {
	CUresult r = vw_cuCtxSetCurrent(ctx);
	return r ? r : vw_cuMemFree(p);
}
// Copies go through two pinned staging buffers on one stream: the driver
// copies pinned memory by DMA (pageable memory only through a bounce
// buffer of its own), and while one piece moves by DMA the next is copied
// into the other buffer.
typedef struct {
	CUcontext ctx;
	CUstream stream;
	CUevent done[2];
	void *staging[2];
	size_t piece;
} vw_pipe;

static CUresult vw_pipe_open(CUcontext ctx, vw_pipe *p, size_t piece) {
	CUresult r = vw_cuCtxSetCurrent(ctx);
	if (r) return r;
	memset(p, 0, sizeof *p);
	p->ctx = ctx;
	p->piece = piece;
	if ((r = vw_cuStreamCreate(&p->stream, 1))) return r; // CU_STREAM_NON_BLOCKING
	for (int i = 0; i < 2; i++) {
		if ((r = vw_cuEventCreate(&p->done[i], 2))) return r; // CU_EVENT_DISABLE_TIMING
		if ((r = vw_cuMemHostAlloc(&p->staging[i], piece, 0))) return r;
	}
	return 0;
}

static void vw_pipe_close(vw_pipe *p) {
	if (vw_cuCtxSetCurrent(p->ctx)) return;
	for (int i = 0; i < 2; i++) {
		if (p->staging[i]) vw_cuMemFreeHost(p->staging[i]);
		if (p->done[i]) vw_cuEventDestroy(p->done[i]);
	}
	if (p->stream) vw_cuStreamDestroy(p->stream);
}

// vw_htod copies n bytes of host memory to dst, piece by piece, through
// the staging buffers; it returns when the last piece has arrived.
static CUresult vw_htod(vw_pipe *p, CUdeviceptr dst, const void *src, size_t n) {
	CUresult r = vw_cuCtxSetCurrent(p->ctx);
	if (r) return r;
	int used[2] = {0, 0};
	for (size_t off = 0, i = 0; off < n; off += p->piece, i ^= 1) {
		size_t k = n - off < p->piece ? n - off : p->piece;
		if (used[i] && (r = vw_cuEventSynchronize(p->done[i]))) return r; // the buffer's last DMA is done
		memcpy(p->staging[i], (const char *)src + off, k);
		if ((r = vw_cuMemcpyHtoDAsync(dst + off, p->staging[i], k, p->stream))) return r;
		if ((r = vw_cuEventRecord(p->done[i], p->stream))) return r;
		used[i] = 1;
	}
	return vw_cuStreamSynchronize(p->stream);
}

// vw_dtoh copies n bytes from src to host memory: the DMA of the next
// piece runs while the previous one is copied out of its staging buffer.
static CUresult vw_dtoh(vw_pipe *p, void *dst, CUdeviceptr src, size_t n) {
	CUresult r = vw_cuCtxSetCurrent(p->ctx);
	if (r) return r;
	size_t pieces = (n + p->piece - 1) / p->piece;
	for (size_t i = 0; i < pieces + 1; i++) {
		if (i < pieces) { // start piece i
			size_t off = i * p->piece, k = n - off < p->piece ? n - off : p->piece;
			if ((r = vw_cuMemcpyDtoHAsync(p->staging[i & 1], src + off, k, p->stream))) return r;
			if ((r = vw_cuEventRecord(p->done[i & 1], p->stream))) return r;
		}
		if (i > 0) { // finish piece i-1
			size_t j = i - 1, off = j * p->piece, k = n - off < p->piece ? n - off : p->piece;
			if ((r = vw_cuEventSynchronize(p->done[j & 1]))) return r;
			memcpy((char *)dst + off, p->staging[j & 1], k);
		}
	}
	return 0;
}
// Attributes 2 (MEMORY_TYPE), 8 (IS_MANAGED), 9 (DEVICE_ORDINAL).
static CUresult vw_pointer(CUcontext ctx, CUdeviceptr p, unsigned int *type, int *managed, int *ordinal) {
	CUresult r = vw_cuCtxSetCurrent(ctx);
	if (r) return r;
	if ((r = vw_cuPointerGetAttribute(type, 2, p))) return r;
	*managed = 0;
	if ((r = vw_cuPointerGetAttribute(managed, 8, p))) return r;
	return vw_cuPointerGetAttribute(ordinal, 9, p);
}
static void vw_release(CUdevice dev) { vw_cuDevicePrimaryCtxRelease(dev); }
*/
import "C"

import (
	"fmt"
	"sync"
	"unsafe"
)

// cudaChunk is the copy size the backend works in, large enough to keep
// the link busy and small enough to pipeline with hashing; each copy moves
// in stagingPiece pieces through two pinned buffers.
const (
	cudaChunk    = 64 << 20
	stagingPiece = 8 << 20
)

// CUDA is the driver over the CUDA driver API.
type CUDA struct {
	devs []*cudaDevice
}

type cudaDevice struct {
	index int
	dev   C.CUdevice
	ctx   C.CUcontext
	name  string
	uuid  string

	mu   sync.Mutex // one copy at a time through the staging buffers
	pipe C.vw_pipe
	open bool
}

func cudaErr(what string, r C.CUresult) error {
	if r == 0 {
		return nil
	}
	return fmt.Errorf("%s: %s (%d)", what, C.GoString(C.vw_error_name(r)), int(r))
}

// OpenCUDA loads libcuda.so.1, initialises the driver and retains each
// device's primary context. Without the driver or a device it returns an
// error wrapping ErrUnavailable that names what is missing.
func OpenCUDA() (Driver, error) {
	if missing := C.vw_open(); missing != nil {
		return nil, fmt.Errorf("%w: cannot load %s from the NVIDIA driver: %s", ErrUnavailable, C.GoString(missing), C.GoString(C.vw_dlerror()))
	}
	var count C.int
	if err := cudaErr("cuInit", C.vw_init(&count)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if count == 0 {
		return nil, fmt.Errorf("%w: the CUDA driver sees no device", ErrUnavailable)
	}
	c := &CUDA{}
	for i := 0; i < int(count); i++ {
		d := &cudaDevice{index: i}
		var name [256]C.char
		var uuid [16]C.char
		if err := cudaErr(fmt.Sprintf("device %d", i), C.vw_device(C.int(i), &d.dev, &d.ctx, &name[0], 256, &uuid[0])); err != nil {
			c.Close()
			return nil, err
		}
		d.name = C.GoString(&name[0])
		u := C.GoBytes(unsafe.Pointer(&uuid[0]), 16)
		d.uuid = fmt.Sprintf("GPU-%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
		c.devs = append(c.devs, d)
		if err := cudaErr("staging buffers and stream", C.vw_pipe_open(d.ctx, &d.pipe, stagingPiece)); err != nil {
			c.Close()
			return nil, err
		}
		d.open = true
	}
	return c, nil
}

func (c *CUDA) Backend() string { return "cuda" }
func (c *CUDA) ChunkBytes() int { return cudaChunk }

func (c *CUDA) Devices() []Device {
	out := make([]Device, len(c.devs))
	for i, d := range c.devs {
		out[i] = d
	}
	return out
}

func (c *CUDA) Close() error {
	for _, d := range c.devs {
		d.mu.Lock()
		C.vw_pipe_close(&d.pipe)
		d.open = false
		d.mu.Unlock()
		C.vw_release(d.dev)
	}
	c.devs = nil
	return nil
}

func (d *cudaDevice) Index() int   { return d.index }
func (d *cudaDevice) Name() string { return d.name }
func (d *cudaDevice) UUID() string { return d.uuid }

func (d *cudaDevice) MemInfo() (uint64, uint64, error) {
	var free, total C.size_t
	err := cudaErr("cuMemGetInfo", C.vw_meminfo(d.ctx, &free, &total))
	return uint64(free), uint64(total), err
}

func (d *cudaDevice) Alloc(n uint64) (Ptr, error) {
	var p C.CUdeviceptr
	r := C.vw_alloc(d.ctx, &p, C.size_t(n))
	if r == 2 { // CUDA_ERROR_OUT_OF_MEMORY
		free, _, _ := d.MemInfo()
		return 0, &OutOfMemory{Requested: n, Available: free, Err: cudaErr("cuMemAlloc", r)}
	}
	return Ptr(p), cudaErr("cuMemAlloc", r)
}

func (d *cudaDevice) Free(p Ptr) error {
	return cudaErr("cuMemFree", C.vw_free(d.ctx, C.CUdeviceptr(p)))
}

func (d *cudaDevice) CopyHtoD(p Ptr, off uint64, buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return cudaErr("copy to the device", C.vw_htod(&d.pipe, C.CUdeviceptr(uint64(p)+off), unsafe.Pointer(&buf[0]), C.size_t(len(buf))))
}

func (d *cudaDevice) CopyDtoH(buf []byte, p Ptr, off uint64) error {
	if len(buf) == 0 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return cudaErr("copy from the device", C.vw_dtoh(&d.pipe, unsafe.Pointer(&buf[0]), C.CUdeviceptr(uint64(p)+off), C.size_t(len(buf))))
}

func (d *cudaDevice) Pointer(p Ptr) (PointerInfo, error) {
	var typ C.uint
	var managed, ordinal C.int
	if err := cudaErr("cuPointerGetAttribute", C.vw_pointer(d.ctx, C.CUdeviceptr(p), &typ, &managed, &ordinal)); err != nil {
		return PointerInfo{}, err
	}
	return PointerInfo{Type: MemoryType(typ), Managed: managed != 0, Device: int(ordinal)}, nil
}
