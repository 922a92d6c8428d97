package daemon

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vramward/vramward/host/config"
	"github.com/vramward/vramward/host/pluginhost"
	"github.com/vramward/vramward/sdk/handshake"
	"github.com/vramward/vramward/sdk/schema"
)

// SpecOf is how the host launches the plugin a block declares.
func SpecOf(p *config.Plugin) pluginhost.Spec {
	spec := pluginhost.Spec{Name: p.Name, Kind: p.Kind, Path: p.Path, SHA256: p.SHA256, StartTimeout: p.StartTimeout}
	if p.User != nil {
		spec.User = &pluginhost.Account{UID: p.User.UID, GID: p.User.GID}
	}
	spec.Limits = limitsOf(p)
	return spec
}

// The cgroup limits of a plugin block that sets none: room for a sink's
// batches and a loader's reads many times over, threads for any Go
// runtime; the VRAM backend's memory is the CUDA driver's to size (pinned
// buffers as large as a model's shards), so it has no memory limit.
const (
	DefaultPluginMemoryBytes = 1 << 30
	DefaultPluginPids        = 1024
)

// limitsOf are p's cgroup limits: those it sets are required (a host that
// cannot apply them does not start the plugin); the defaults are applied
// where the host may create cgroups, and status says when it may not.
func limitsOf(p *config.Plugin) pluginhost.Limits {
	l := pluginhost.Limits{MemoryBytes: DefaultPluginMemoryBytes, Pids: DefaultPluginPids}
	if p.Kind == handshake.KindVramBackend {
		l.MemoryBytes = 0
	}
	if p.MemoryMaxBytes >= 0 {
		l.MemoryBytes, l.Required = p.MemoryMaxBytes, l.Required || p.MemoryMaxBytes > 0
	}
	if p.PidsMax >= 0 {
		l.Pids, l.Required = p.PidsMax, l.Required || p.PidsMax > 0
	}
	return l
}

// pathsOf are the files of a kind that a plugin's decoded config block
// (vals) names, as its schema marks them.
func pathsOf(vals map[string]any, sch schema.Schema, kind schema.PathKind) []string {
	var out []string
	for _, a := range sch {
		if v, _ := vals[a.Name].(string); a.Path == kind && v != "" {
			out = append(out, v)
		}
	}
	return out
}

// configValues is a plugin's decoded config block as JSON values.
func configValues(u *config.PluginUse) map[string]any {
	vals := map[string]any{}
	_ = json.Unmarshal(u.ConfigJSON, &vals)
	return vals
}

// usePolicy is what the host lets a plugin reach, from its block in the
// config and the schema it publishes: a file attribute it writes gives it
// that file's directory, one it reads that file; a loader and a VRAM backend
// read the loader's allowed roots (the backend opens the model beneath
// them); a VRAM backend gets the GPU's device nodes and driver state; the
// plugin block's network = true lets it use TCP. Nothing else: not the
// state dir, not the token, not another plugin's files.
func usePolicy(cfg *config.Config, u *config.PluginUse, sch schema.Schema) pluginhost.Policy {
	var p pluginhost.Policy
	vals := configValues(u)
	for _, f := range pathsOf(vals, sch, schema.WrittenFile) {
		p.WriteDirs = append(p.WriteDirs, filepath.Dir(f))
	}
	p.ReadFiles = pathsOf(vals, sch, schema.ReadFile)
	if u.Role == "loader" || u.Role == "vram" {
		p.ReadDirs = append(p.ReadDirs, loaderRoots(cfg)...)
	}
	if b, _ := vals["backend"].(string); u.Role == "vram" && b != "emulated" {
		devs, _ := filepath.Glob("/dev/nvidia*")
		p.Devices = append(devs, "/dev/dri")
		p.ReadDirs = append(p.ReadDirs, "/proc/driver/nvidia", "/sys/bus", "/sys/devices", "/sys/module/nvidia", "/run/nvidia-persistenced",
			"/var/run/nvidia-persistenced", "/usr/local/nvidia", "/usr/local/cuda")
		for _, d := range filepath.SplitList(os.Getenv("LD_LIBRARY_PATH")) {
			if filepath.IsAbs(d) {
				p.ReadDirs = append(p.ReadDirs, d)
			}
		}
	}
	// vram-cuda's tamper build (tests only) reads the file this names.
	if f := os.Getenv("VRAMWARD_TAMPER_FILE"); f != "" && u.Role == "vram" {
		p.WriteDirs = append(p.WriteDirs, filepath.Dir(f))
	}
	if pl := cfg.Plugin(u.Plugin); pl != nil {
		p.Network = pl.Network
	}
	return p
}

// loaderRoots are the loader block's allowed_roots.
func loaderRoots(cfg *config.Config) []string {
	if cfg.Loader == nil {
		return nil
	}
	var lc struct {
		Roots []string `json:"allowed_roots"`
	}
	_ = json.Unmarshal(cfg.Loader.ConfigJSON, &lc)
	return lc.Roots
}

func samePolicy(a, b pluginhost.Policy) bool {
	eq := func(x, y []string) bool {
		x, y = slices.Clone(x), slices.Clone(y)
		slices.Sort(x)
		slices.Sort(y)
		return strings.Join(x, "\x00") == strings.Join(y, "\x00")
	}
	return eq(a.ReadDirs, b.ReadDirs) && eq(a.ReadFiles, b.ReadFiles) && eq(a.WriteDirs, b.WriteDirs) && eq(a.Devices, b.Devices) && a.Network == b.Network
}
