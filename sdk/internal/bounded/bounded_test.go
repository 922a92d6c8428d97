package bounded

import (
	"strings"
	"testing"
)

func TestCaps(t *testing.T) {
	if Info(strings.Repeat("n", MaxNameBytes), "v") != nil || Info(strings.Repeat("n", MaxNameBytes+1), "v") == nil {
		t.Error("the name cap is not at MaxNameBytes")
	}
	if Info("n", strings.Repeat("v", MaxVersionBytes+1)) == nil {
		t.Error("a long version passed")
	}
	long := strings.Repeat("x", 10*MaxTextBytes)
	got := Text(long)
	if len(got) > MaxTextBytes+64 || !strings.Contains(got, "more bytes cut by the host") {
		t.Errorf("Text kept %d bytes: %q", len(got), got[len(got)-40:])
	}
	if Text("short") != "short" {
		t.Error("a short text changed")
	}
	l := List(make([]string, 1000))
	if len(l) != MaxListItems {
		t.Errorf("List kept %d items", len(l))
	}
}

// A hostile plugin's Configure answer: the sandbox description the host
// shows in its status is cut like any other text a plugin sends. Before,
// it was kept whole.
func TestSandboxReportIsBounded(t *testing.T) {
	var r SandboxReport
	r.Set(true, strings.Repeat("landlock ", MaxTextBytes))
	if ok, how := r.Get(); !ok || len(how) > MaxTextBytes+64 {
		t.Fatalf("kept %v, %d bytes", ok, len(how))
	}
	if _, err := PluginInfo("n", "v", nil); err != nil {
		t.Fatalf("no schema is an empty one: %v", err)
	}
	if _, err := PluginInfo(strings.Repeat("n", MaxNameBytes+1), "v", nil); err == nil {
		t.Fatal("a long name passed")
	}
}
