package metrics

import (
	"os/exec"
	"testing"

	"github.com/vramward/vramward/sdk/plugintest"
)

// TestAlertRules checks deploy/prometheus-rules.yml with promtool and runs
// its unit tests (deploy/tests/rules_test.yml).
func TestAlertRules(t *testing.T) {
	promtool := plugintest.RequireTool(t, "promtool")
	for _, args := range [][]string{
		{"check", "rules", "../../deploy/prometheus-rules.yml"},
		{"test", "rules", "../../deploy/tests/rules_test.yml"},
	} {
		if out, err := exec.Command(promtool, args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
