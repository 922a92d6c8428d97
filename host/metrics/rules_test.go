package metrics

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vramward/vramward/internal/metricnames"
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

// TestGrafanaDashboard: every PromQL expression of deploy/grafana/vramward.json
// is valid (promtool checks them as recording rules, Grafana's variables
// given values), and every metric it names is one the host or a plugin
// defines.
func TestGrafanaDashboard(t *testing.T) {
	promtool := plugintest.RequireTool(t, "promtool")
	raw, err := os.ReadFile("../../deploy/grafana/vramward.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	vars := strings.NewReplacer("$__rate_interval", "5m", "$instance", ".*")
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	used := map[string]bool{}
	metricRE := regexp.MustCompile(`vramward_[a-z_]+`)
	n := 0
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			expr := vars.Replace(tg.Expr)
			fmt.Fprintf(&rules, "      - record: vramward_dashboard:panel_%d_%s\n        expr: %q\n", p.ID, strings.ToLower(tg.RefID), expr)
			for _, m := range metricRE.FindAllString(expr, -1) {
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					m = strings.TrimSuffix(m, suffix)
				}
				used[m] = true
			}
			n++
		}
	}
	path := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(path, []byte(rules.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules on the dashboard's %d expressions: %v\n%s", n, err, out)
	}
	defined, err := metricnames.Defined("../../host", "../../plugins", "../../sdk")
	if err != nil {
		t.Fatal(err)
	}
	for m := range used {
		if !defined[m] {
			t.Errorf("the dashboard uses %s, which nothing defines", m)
		}
	}
	if n < 10 {
		t.Errorf("only %d queries", n)
	}
}
