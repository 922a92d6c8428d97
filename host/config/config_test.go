package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vramward/vramward/sdk/loader"
	"github.com/vramward/vramward/sdk/plugintest"
	"github.com/vramward/vramward/sdk/schema"
)

var update = flag.Bool("update", false, "rewrite golden files")

// fileSchema mirrors the audit-file plugin's published schema (the real
// binary is checked end to end by the host's tests).
var fileSchema = schema.Schema{
	{Name: "path", Type: schema.String, Required: true},
	{Name: "max_bytes", Type: schema.Int, Default: int64(100 << 20)},
	{Name: "max_files", Type: schema.Int, Default: int64(10)},
	{Name: "flush_interval", Type: schema.Duration, Default: time.Second},
}

// schemas are the published schemas of the plugins the test configs use
// (a loader's is at least the standard one).
var schemas = map[string]schema.Schema{"audit-file": fileSchema, "loader-gguf": loader.StandardSchema}

// TestDiagnosticsGolden: every problem of each file is reported at once,
// at its file:line:col.
func TestDiagnosticsGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/diags/*.hcl")
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".hcl")
		t.Run(name, func(t *testing.T) {
			c, _, diags := Load(f)
			if c != nil && !diags.HasErrors() {
				diags = append(diags, c.DecodePluginConfigs(schemas)...)
			}
			got := Format(diags)
			plugintest.Golden(t, strings.TrimSuffix(f, ".hcl")+".golden", []byte(got), *update)
		})
	}
}

func TestGoodConfig(t *testing.T) {
	c, _, diags := Load("testdata/diags/good.hcl")
	if diags.HasErrors() {
		t.Fatal(Format(diags))
	}
	if d := c.DecodePluginConfigs(schemas); d.HasErrors() {
		t.Fatal(Format(d))
	}
	dir, _ := filepath.Abs("testdata/diags")
	if c.Worker.StateDir != filepath.Join(dir, "state") {
		t.Errorf("state_dir not resolved against the config's directory: %s", c.Worker.StateDir)
	}
	if p := c.Plugin("audit-file"); p == nil || p.Path != filepath.Join(dir, "../bin/vramward-plugin-audit-file") || p.StartTimeout != DefaultStartTimeout {
		t.Errorf("plugin: %+v", p)
	}
	a := c.Audit
	if a.Require != "any" || a.BatchWait != 5*time.Millisecond || a.QueueSize != DefaultQueueSize || a.CheckpointEvents != DefaultCheckpointEvents {
		t.Errorf("audit: %+v", a)
	}
	want := `{"flush_interval":"2s","max_bytes":104857600,"max_files":10,"path":"` + filepath.Join(dir, "var/audit.log") + `"}`
	if got := string(a.Sinks[0].ConfigJSON); got != want {
		t.Errorf("sink config\n got %s\nwant %s", got, want)
	}
	if c.Loader == nil || c.Loader.Plugin != "loader-gguf" || string(c.Loader.ConfigJSON) != `{"allowed_roots":["`+filepath.Join(dir, "models")+`"],"max_file_bytes":1099511627776}` {
		t.Errorf("loader: %+v", c.Loader)
	}
	m := c.Models[0]
	if m.SHA256 != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" || m.ShardID != "llama" || m.Device != 0 {
		t.Errorf("model: %+v", m)
	}
	if c.Verify.Interval != 30*time.Second || c.Verify.OnFailure != "release" || c.Metrics.Listen != "127.0.0.1:0" {
		t.Errorf("verify/metrics: %+v %+v", c.Verify, c.Metrics)
	}
	if len(c.SHA256) != 64 {
		t.Errorf("config digest %q", c.SHA256)
	}
}

func TestFieldDiagnosticsPointAtTheAttribute(t *testing.T) {
	c, _, diags := Load("testdata/diags/good.hcl")
	if diags.HasErrors() {
		t.Fatal(Format(diags))
	}
	d := c.Audit.Sinks[0].FieldDiagnostics([]*schema.FieldError{{Field: "path", Msg: "directory is world-writable"}})
	if got := Format(d); !strings.HasPrefix(got, "testdata/diags/good.hcl:23:24: error: Invalid value for \"path\": directory is world-writable") {
		t.Fatalf("got %s", got)
	}
}

// TestPluginLimits: memory_max_bytes and pids_max are -1 when absent (the
// kind's default applies), 0 or a value in range when set, and anything
// else is refused at its file:line:col.
func TestPluginLimits(t *testing.T) {
	good, err := os.ReadFile("testdata/diags/good.hcl")
	if err != nil {
		t.Fatal(err)
	}
	load := func(attrs string) (*Config, string) {
		t.Helper()
		src := strings.Replace(string(good), "plugin \"audit-file\" {\n", "plugin \"audit-file\" {\n"+attrs, 1)
		if attrs != "" && src == string(good) {
			t.Fatal("good.hcl has no audit-file plugin block")
		}
		path := filepath.Join(t.TempDir(), "vramward.hcl")
		if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		c, _, diags := Load(path)
		return c, strings.ReplaceAll(Format(diags), path, "vramward.hcl")
	}
	plugin := func(c *Config) *Plugin {
		for _, p := range c.Plugins {
			if p.Name == "audit-file" {
				return p
			}
		}
		t.Fatal("no audit-file plugin")
		return nil
	}
	c, d := load("")
	if d != "" || plugin(c).MemoryMaxBytes != -1 || plugin(c).PidsMax != -1 {
		t.Fatalf("absent: %+v %s", plugin(c), d)
	}
	c, d = load("  memory_max_bytes = 0\n  pids_max = 64\n")
	if d != "" || plugin(c).MemoryMaxBytes != 0 || plugin(c).PidsMax != 64 {
		t.Fatalf("set: %+v %s", plugin(c), d)
	}
	for attrs, want := range map[string]string{
		"  memory_max_bytes = 1024\n": `vramward.hcl:12:22: error: Invalid value for "memory_max_bytes": Want 0 (no limit) or a whole number from 16777216 to 1125899906842624, got 1024.`,
		"  pids_max = 2.5\n":          `vramward.hcl:12:14: error: Invalid value for "pids_max": Want 0 (no limit) or a whole number from 16 to 4194304, got 2.5.`,
		"  pids_max = \"many\"\n":     `vramward.hcl:12:14: error: Invalid value for "pids_max"`,
	} {
		if _, d := load(attrs); !strings.HasPrefix(d, want) {
			t.Errorf("%q: got %s, want %s", attrs, d, want)
		}
	}
}
