/*
 * A stand-in for libcuda.so.1 in tests, where no GPU is: the few driver
 * entry points vram-cuda resolves, over host memory. It lets the tests run
 * the real cgo binding (dlopen, dlsym of the versioned symbols, contexts,
 * pinned staging, pointer attributes, out-of-memory) end to end. Its one
 * device is named as what it is: emulated, host memory. Never shipped.
 *
 *   FAKECUDA_BYTES    device memory (default 64 MiB)
 *   FAKECUDA_MANAGED  1: every allocation reports itself as managed memory
 */
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext;
typedef unsigned long long CUdeviceptr;

#define MAXALLOC 4096
static struct { CUdeviceptr p; size_t n; } allocs[MAXALLOC];
static size_t used, total;
static int inited;
static int ctx_token;

static size_t limit(void) {
	const char *s = getenv("FAKECUDA_BYTES");
	return s ? (size_t)strtoull(s, NULL, 10) : (size_t)64 << 20;
}

CUresult cuInit(unsigned int flags) { (void)flags; inited = 1; total = limit(); return 0; }
CUresult cuDeviceGetCount(int *n) { if (!inited) return 3; *n = 1; return 0; }
CUresult cuDeviceGet(CUdevice *d, int ordinal) { if (ordinal != 0) return 101; *d = 0; return 0; }
CUresult cuDeviceGetName(char *name, int len, CUdevice d) {
	(void)d;
	strncpy(name, "EMULATED stand-in CUDA device (host memory, tests only)", (size_t)len - 1);
	name[len - 1] = 0;
	return 0;
}
CUresult cuDeviceGetUuid(char *uuid, CUdevice d) { (void)d; memcpy(uuid, "EMULATEDFAKECUDA", 16); return 0; }
CUresult cuDevicePrimaryCtxRetain(CUcontext *c, CUdevice d) { (void)d; *c = &ctx_token; return 0; }
CUresult cuDevicePrimaryCtxRelease_v2(CUdevice d) { (void)d; return 0; }
CUresult cuCtxSetCurrent(CUcontext c) { return c == &ctx_token ? 0 : 201; }

CUresult cuMemGetInfo_v2(size_t *free, size_t *tot) { *free = total - used; *tot = total; return 0; }

CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t n) {
	if (n > total - used) return 2; /* CUDA_ERROR_OUT_OF_MEMORY */
	void *m = malloc(n ? n : 1);
	if (!m) return 2;
	for (int i = 0; i < MAXALLOC; i++) {
		if (!allocs[i].p) {
			allocs[i].p = (CUdeviceptr)(uintptr_t)m;
			allocs[i].n = n;
			used += n;
			*p = allocs[i].p;
			return 0;
		}
	}
	free(m);
	return 2;
}

static int find(CUdeviceptr p) {
	for (int i = 0; i < MAXALLOC; i++)
		if (allocs[i].p && p >= allocs[i].p && p < allocs[i].p + (allocs[i].n ? allocs[i].n : 1)) return i;
	return -1;
}

CUresult cuMemFree_v2(CUdeviceptr p) {
	for (int i = 0; i < MAXALLOC; i++) {
		if (allocs[i].p == p) {
			free((void *)(uintptr_t)p);
			used -= allocs[i].n;
			allocs[i].p = 0;
			return 0;
		}
	}
	return 1; /* CUDA_ERROR_INVALID_VALUE */
}

static int inside(CUdeviceptr p, size_t n) {
	int i = find(p);
	return i >= 0 && p + n <= allocs[i].p + allocs[i].n;
}

CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n) {
	if (!inside(dst, n)) return 1;
	memcpy((void *)(uintptr_t)dst, src, n);
	return 0;
}

CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n) {
	if (!inside(src, n)) return 1;
	memcpy(dst, (const void *)(uintptr_t)src, n);
	return 0;
}

CUresult cuPointerGetAttribute(void *data, int attr, CUdeviceptr p) {
	if (find(p) < 0) return 1;
	switch (attr) {
	case 2: *(unsigned int *)data = 2; return 0; /* MEMORY_TYPE: device */
	case 8: *(unsigned int *)data = getenv("FAKECUDA_MANAGED") && *getenv("FAKECUDA_MANAGED") == '1'; return 0;
	case 9: *(int *)data = 0; return 0; /* DEVICE_ORDINAL */
	}
	return 1;
}

CUresult cuMemHostAlloc(void **p, size_t n, unsigned int flags) { (void)flags; *p = malloc(n); return *p ? 0 : 2; }
CUresult cuMemFreeHost(void *p) { free(p); return 0; }

/* Streams and events: the stand-in copies at once, so they only have to
 * exist; the pipelined code's order of calls still runs. */
static int stream_token, event_tokens[64];
static int events;
CUresult cuStreamCreate(void **s, unsigned int flags) { (void)flags; *s = &stream_token; return 0; }
CUresult cuStreamSynchronize(void *s) { return s == &stream_token ? 0 : 400; }
CUresult cuStreamDestroy_v2(void *s) { return s == &stream_token ? 0 : 400; }
CUresult cuEventCreate(void **e, unsigned int flags) { (void)flags; *e = &event_tokens[events++ % 64]; return 0; }
CUresult cuEventRecord(void *e, void *s) { return e && s == &stream_token ? 0 : 400; }
CUresult cuEventSynchronize(void *e) { return e ? 0 : 400; }
CUresult cuEventDestroy_v2(void *e) { return e ? 0 : 400; }
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t n, void *s) {
	if (s != &stream_token) return 400;
	return cuMemcpyHtoD_v2(dst, src, n);
}
CUresult cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t n, void *s) {
	if (s != &stream_token) return 400;
	return cuMemcpyDtoH_v2(dst, src, n);
}

CUresult cuGetErrorName(CUresult r, const char **s) {
	switch (r) {
	case 1: *s = "CUDA_ERROR_INVALID_VALUE"; return 0;
	case 2: *s = "CUDA_ERROR_OUT_OF_MEMORY"; return 0;
	case 3: *s = "CUDA_ERROR_NOT_INITIALIZED"; return 0;
	case 101: *s = "CUDA_ERROR_INVALID_DEVICE"; return 0;
	case 201: *s = "CUDA_ERROR_INVALID_CONTEXT"; return 0;
	case 400: *s = "CUDA_ERROR_INVALID_HANDLE"; return 0;
	}
	*s = "CUDA_ERROR_UNKNOWN";
	return 0;
}
