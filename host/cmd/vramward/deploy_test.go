package main

import (
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/vramward/vramward/host/config"
	"github.com/vramward/vramward/sdk/plugintest"
)

// TestSystemdUnitExposure scores deploy/vramward.service with systemd's own
// security analysis: an overall exposure of 2.0 or lower, the token as a
// credential, and no capability.
func TestSystemdUnitExposure(t *testing.T) {
	tool := plugintest.RequireTool(t, "systemd-analyze")
	const unit = "../../../deploy/vramward.service"
	out, err := exec.Command(tool, "security", "--offline=yes", unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for vramward\.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no overall exposure in:\n%s", out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	if score > 2.0 {
		t.Fatalf("exposure %.1f, want 2.0 or lower:\n%s", score, out)
	}
	t.Logf("systemd-analyze security: exposure %.1f", score)
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"LoadCredential=worker-token:", "CapabilityBoundingSet=\n", "SystemCallFilter=@system-service", "DevicePolicy=closed"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the unit lacks %q", want)
		}
	}
}

// TestProductionExampleConfig: deploy/vramward.hcl, the config the unit
// runs, parses and asks for what production needs: the token as a
// credential and a refusal of any seal that is not from a real GPU.
func TestProductionExampleConfig(t *testing.T) {
	cfg, _, diags := config.Load("../../../deploy/vramward.hcl")
	if diags.HasErrors() {
		t.Fatal(config.Format(diags))
	}
	if cfg.Worker.TokenCredential != "worker-token" || cfg.Vram == nil || cfg.Vram.RequireBackend != "cuda" {
		t.Fatalf("token_credential %q, require_backend %+v", cfg.Worker.TokenCredential, cfg.Vram)
	}
}
