package telemetry

import (
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
)

// Eight simulated H100s (go-nvml's mock): names, UUIDs and memory read
// through the same calls as on a real node.
func TestSimulatedH100s(t *testing.T) {
	n := Open(dgxh100.New())
	defer n.Close()
	if !n.Available() {
		t.Fatal(n.Unavailable)
	}
	devs, err := n.Devices()
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 8 {
		t.Fatalf("%d devices", len(devs))
	}
	for _, d := range devs {
		if !strings.Contains(d.Name, "H100") || d.UUID == "" || d.TotalBytes == 0 || d.UsedBytes > d.TotalBytes {
			t.Fatalf("device %+v", d)
		}
	}
	d, ok := n.ByUUID(strings.ToLower(devs[3].UUID))
	if !ok || d.Index != 3 {
		t.Fatalf("ByUUID: %+v %v", d, ok)
	}
}

// Where there is no NVIDIA driver, NVML is reported absent, not fatal.
func TestAbsentNVMLIsReported(t *testing.T) {
	n := Open(nvml.New())
	defer n.Close()
	if n.Available() {
		t.Skip("this machine has NVML")
	}
	if !strings.Contains(n.Unavailable, "NVML") {
		t.Fatalf("reason %q", n.Unavailable)
	}
	if _, err := n.Devices(); err == nil {
		t.Fatal("Devices answered without NVML")
	}
}
