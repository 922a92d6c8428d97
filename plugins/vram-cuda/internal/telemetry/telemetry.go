// Package telemetry reads device names, UUIDs and memory through NVML
// (github.com/NVIDIA/go-nvml). NVML sees device-wide memory use (other
// processes included), which the CUDA driver's per-context view does not.
// Its absence (no driver, a container without the library) is reported
// once and is not fatal: the backend falls back to the CUDA driver's
// figures.
package telemetry

import (
	"fmt"
	"strings"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// Device is what NVML says about one device.
type Device struct {
	Index                       int
	Name, UUID                  string
	TotalBytes, UsedBytes, Free uint64
}

// NVML is an opened NVML library, or the reason there is none.
type NVML struct {
	lib nvml.Interface
	// Unavailable says why NVML cannot be used ("" when it can).
	Unavailable string
	mu          sync.Mutex
}

// Open initialises lib (nvml.New() for the real library).
func Open(lib nvml.Interface) *NVML {
	n := &NVML{lib: lib}
	if ret := lib.Init(); ret != nvml.SUCCESS {
		n.Unavailable = fmt.Sprintf("NVML: %s", lib.ErrorString(ret))
	}
	return n
}

// Available says whether NVML answers.
func (n *NVML) Available() bool { return n.Unavailable == "" }

// Devices lists every device NVML sees.
func (n *NVML) Devices() ([]Device, error) {
	if !n.Available() {
		return nil, fmt.Errorf("%s", n.Unavailable)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	count, ret := n.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, n.err("device count", ret)
	}
	out := make([]Device, 0, count)
	for i := 0; i < count; i++ {
		h, ret := n.lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return nil, n.err(fmt.Sprintf("device %d", i), ret)
		}
		d := Device{Index: i}
		if d.Name, ret = h.GetName(); ret != nvml.SUCCESS {
			return nil, n.err("name", ret)
		}
		if d.UUID, ret = h.GetUUID(); ret != nvml.SUCCESS {
			return nil, n.err("uuid", ret)
		}
		// GetMemoryInfo (v1) exists on every driver; _v2 has no fallback on
		// old ones.
		mem, ret := h.GetMemoryInfo()
		if ret != nvml.SUCCESS {
			return nil, n.err("memory info", ret)
		}
		d.TotalBytes, d.UsedBytes, d.Free = mem.Total, mem.Used, mem.Free
		out = append(out, d)
	}
	return out, nil
}

// ByUUID finds a device by its UUID: CUDA's ordinals and NVML's indexes
// need not agree (CUDA orders fastest first by default), UUIDs do.
func (n *NVML) ByUUID(uuid string) (Device, bool) {
	devs, err := n.Devices()
	if err != nil {
		return Device{}, false
	}
	for _, d := range devs {
		if strings.EqualFold(d.UUID, uuid) {
			return d, true
		}
	}
	return Device{}, false
}

func (n *NVML) err(what string, ret nvml.Return) error {
	return fmt.Errorf("NVML %s: %s", what, n.lib.ErrorString(ret))
}

// Close shuts NVML down.
func (n *NVML) Close() {
	if n.Available() {
		n.lib.Shutdown()
	}
}
