package gpu

import (
	"fmt"
	"sync"
)

// Emulated is a driver whose "device memory" is host memory. It exists so
// that everything above the copy primitive runs (and is tested) where no
// GPU is; its devices are named and labelled emulated, and a seal made on
// one says so, so it is never mistaken for residency on a GPU.
type Emulated struct {
	devs []*emulatedDevice
}

// NewEmulated makes n devices of size bytes each.
func NewEmulated(n int, size uint64) *Emulated {
	e := &Emulated{}
	for i := 0; i < n; i++ {
		e.devs = append(e.devs, &emulatedDevice{index: i, total: size, mem: map[Ptr][]byte{}, next: 1 << 40})
	}
	return e
}

func (e *Emulated) Backend() string { return "emulated" }
func (e *Emulated) ChunkBytes() int { return 16 << 20 }

func (e *Emulated) Devices() []Device {
	out := make([]Device, len(e.devs))
	for i, d := range e.devs {
		out[i] = d
	}
	return out
}

func (e *Emulated) Close() error {
	for _, d := range e.devs {
		d.mu.Lock()
		d.mem, d.used = map[Ptr][]byte{}, 0
		d.mu.Unlock()
	}
	return nil
}

type emulatedDevice struct {
	index int
	total uint64

	mu   sync.Mutex
	used uint64
	mem  map[Ptr][]byte
	next Ptr
}

func (d *emulatedDevice) Index() int { return d.index }
func (d *emulatedDevice) Name() string {
	return fmt.Sprintf("emulated device %d (host memory)", d.index)
}
func (d *emulatedDevice) UUID() string { return fmt.Sprintf("EMULATED-%d", d.index) }

func (d *emulatedDevice) MemInfo() (uint64, uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.total - d.used, d.total, nil
}

func (d *emulatedDevice) Alloc(n uint64) (Ptr, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n > d.total-d.used {
		return 0, &OutOfMemory{Requested: n, Available: d.total - d.used}
	}
	p := d.next
	d.next += Ptr(n+4095) &^ 4095
	d.mem[p] = make([]byte, n)
	d.used += n
	return p, nil
}

func (d *emulatedDevice) Free(p Ptr) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	b, ok := d.mem[p]
	if !ok {
		return fmt.Errorf("free of an unknown pointer %#x", uint64(p))
	}
	d.used -= uint64(len(b))
	delete(d.mem, p)
	return nil
}

func (d *emulatedDevice) span(p Ptr, off uint64, n int) ([]byte, error) {
	d.mu.Lock()
	b, ok := d.mem[p]
	d.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("unknown pointer %#x", uint64(p))
	}
	if off > uint64(len(b)) || uint64(n) > uint64(len(b))-off {
		return nil, fmt.Errorf("copy of %d bytes at %d outside a %d-byte allocation", n, off, len(b))
	}
	return b[off : off+uint64(n)], nil
}

func (d *emulatedDevice) CopyHtoD(p Ptr, off uint64, buf []byte) error {
	dst, err := d.span(p, off, len(buf))
	if err == nil {
		copy(dst, buf)
	}
	return err
}

func (d *emulatedDevice) CopyDtoH(buf []byte, p Ptr, off uint64) error {
	src, err := d.span(p, off, len(buf))
	if err == nil {
		copy(buf, src)
	}
	return err
}

func (d *emulatedDevice) Pointer(p Ptr) (PointerInfo, error) {
	if _, err := d.span(p, 0, 0); err != nil {
		return PointerInfo{}, err
	}
	return PointerInfo{Type: MemoryDevice, Device: d.index}, nil
}

// View implements Viewer: emulated device memory is host memory.
func (d *emulatedDevice) View(p Ptr, off uint64, n int) ([]byte, error) { return d.span(p, off, n) }
