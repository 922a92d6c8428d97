package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vramward/vramward/host/config"
	"github.com/vramward/vramward/host/daemon"
	"github.com/vramward/vramward/host/pluginhost"
	"github.com/vramward/vramward/sdk/handshake"
	"github.com/vramward/vramward/sdk/loader"
)

// loaderPluginName is the GGUF loader's binary name, looked for next to
// vramward when neither -plugin nor -config names one.
const loaderPluginName = "vramward-plugin-loader-gguf"

const ggufUsage = "vramward gguf inspect [-json] [-config FILE | -plugin PATH] MODEL"

func cmdGGUF(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "inspect" {
		return usageError(stderr, "gguf inspect", "want the subcommand inspect")
	}
	fs := newFlags("gguf inspect", stderr)
	asJSON := fs.Bool("json", false, "print the summary (or the refusal) as JSON")
	cfgPath := fs.String("config", "", "use the loader block of this config: its plugin and its allowed_roots and caps")
	pluginPath := fs.String("plugin", "", "the loader plugin binary (default: "+loaderPluginName+" next to vramward); the model's directory is the allowed root")
	if code, stop := parseFlags(fs, args[1:]); stop {
		return code
	}
	if fs.NArg() != 1 {
		return usageError(stderr, "gguf inspect", "want one MODEL, got %d arguments", fs.NArg())
	}
	model := fs.Arg(0)
	spec, configJSON, err := inspectSetup(model, *cfgPath, *pluginPath, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "vramward: %v\n", err)
		return daemon.ExitStartup
	}
	// The host's sandbox lets the loader read its roots, as run does.
	var roots struct {
		Roots []string `json:"allowed_roots"`
	}
	_ = json.Unmarshal(configJSON, &roots)
	spec.Policy.ReadDirs = roots.Roots
	closeToChildren()
	launcher := &pluginhost.Launcher{Logger: newLogger("warn", stderr).Named("plugin"), LogLevel: "warn"}
	proc, err := launcher.Launch(context.Background(), spec, loader.PluginForHost(nil))
	if err != nil {
		fmt.Fprintf(stderr, "vramward: %v\n", err)
		return daemon.ExitStartup
	}
	defer proc.Stop()
	c := proc.Raw.(*loader.Client)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := c.Configure(ctx, configJSON); err != nil {
		fmt.Fprintf(stderr, "vramward: configure the loader: %v\n", err)
		return daemon.ExitStartup
	}
	abs, err := filepath.Abs(model)
	if err != nil {
		fmt.Fprintf(stderr, "vramward: %v\n", err)
		return 1
	}
	sum, err := c.Inspect(ctx, abs)
	if err != nil {
		var r *loader.Rejection
		if !errors.As(err, &r) {
			fmt.Fprintf(stderr, "vramward: %v\n", err)
			return 1
		}
		if *asJSON {
			writeJSON(stdout, map[string]any{"error": rejectionJSON(r)})
		}
		fmt.Fprintf(stderr, "vramward: %s: %s\n", model, describeRejection(r))
		return 1
	}
	if *asJSON {
		writeJSON(stdout, sum)
		return 0
	}
	printSummary(stdout, sum)
	return 0
}

// inspectSetup picks the loader plugin and its config: the config file's
// loader block when given, else the named (or neighbouring) binary with
// the model's own directory as the only root and the default caps.
func inspectSetup(model, cfgPath, pluginPath string, stderr io.Writer) (pluginhost.Spec, []byte, error) {
	if cfgPath != "" {
		if pluginPath != "" {
			return pluginhost.Spec{}, nil, errors.New("give -config or -plugin, not both")
		}
		cfg, ok := loadConfig(cfgPath, stderr)
		if !ok {
			return pluginhost.Spec{}, nil, fmt.Errorf("%s is not a valid config", cfgPath)
		}
		if cfg.Loader == nil {
			return pluginhost.Spec{}, nil, fmt.Errorf("%s has no loader block", cfgPath)
		}
		p := cfg.Plugin(cfg.Loader.Plugin)
		spec := daemon.SpecOf(p)
		if diags := daemon.CheckPluginConfigs(cfg, newLogger("warn", stderr)); diags.HasErrors() {
			fmt.Fprint(stderr, config.Format(diags))
			return spec, nil, fmt.Errorf("%s: the loader's config block is invalid", cfgPath)
		}
		return spec, cfg.Loader.ConfigJSON, nil
	}
	if pluginPath == "" {
		exe, err := os.Executable()
		if err != nil {
			return pluginhost.Spec{}, nil, fmt.Errorf("find the loader plugin: %w (use -plugin)", err)
		}
		pluginPath = filepath.Join(filepath.Dir(exe), loaderPluginName)
	}
	dir, err := filepath.Abs(filepath.Dir(model))
	if err != nil {
		return pluginhost.Spec{}, nil, err
	}
	cfg, _ := json.Marshal(map[string]any{loader.KeyAllowedRoots: []string{dir}})
	// The kind's defaults: the cgroup limits too.
	return daemon.SpecOf(&config.Plugin{Name: "loader", Kind: handshake.KindModelLoader, Path: pluginPath, MemoryMaxBytes: -1, PidsMax: -1}), cfg, nil
}

func describeRejection(r *loader.Rejection) string {
	switch r.Reason {
	case loader.ReasonTooLarge:
		return fmt.Sprintf("refused: %s: %d bytes, limit %d", r.Reason, r.Actual, r.Limit)
	case loader.ReasonPathTraversal:
		return fmt.Sprintf("refused: %s: outside %s: %s", r.Reason, strings.Join(r.AllowedRoots, ", "), r.Msg)
	}
	return fmt.Sprintf("refused: %s: %s", r.Reason, r.Msg)
}

func rejectionJSON(r *loader.Rejection) map[string]any {
	m := map[string]any{"reason": r.Reason, "message": r.Msg, "path": r.Path}
	if r.FormatReason != "" {
		m["format_reason"], m["offset"] = r.FormatReason, r.Offset
	}
	if len(r.AllowedRoots) > 0 {
		m["allowed_roots"] = r.AllowedRoots
	}
	if r.Reason == loader.ReasonTooLarge {
		m["limit"], m["actual"] = r.Limit, r.Actual
	}
	return m
}

func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func printSummary(w io.Writer, s *loader.Summary) {
	row := func(k, format string, args ...any) { fmt.Fprintf(w, "%-15s %s\n", k+":", fmt.Sprintf(format, args...)) }
	row("file", "%s (%s bytes)", s.Path, group(s.FileBytes))
	row("format", "%s v%d", strings.ToUpper(s.Format), s.FormatVersion)
	row("architecture", "%s", orNone(s.ArchitectureName()))
	row("name", "%s", orNone(s.Name))
	row("file type", "%s", orNone(s.FileType))
	row("parameters", "%s", group(s.ParameterCount))
	types := make([]string, len(s.TensorTypes))
	for i, t := range s.TensorTypes {
		types[i] = fmt.Sprintf("%s x%d", t.Type, t.Count)
	}
	row("tensors", "%d, %s bytes (%s)", s.TensorCount, group(s.TensorBytes), strings.Join(types, ", "))
	if s.ContextLength > 0 {
		row("context length", "%d", s.ContextLength)
	} else {
		row("context length", "(not set)")
	}
	row("alignment", "%d (tensor data from byte %d)", s.Alignment, s.DataOffset)
	if s.ChatTemplatePresent {
		row("chat template", "present, %d bytes (not shown, never rendered)", s.ChatTemplateBytes)
	} else {
		row("chat template", "(none)")
	}
	fmt.Fprintf(w, "metadata (%d):\n", s.KVCount)
	width := 0
	for _, m := range s.Metadata {
		width = max(width, len(m.Key))
	}
	for _, m := range s.Metadata {
		fmt.Fprintf(w, "  %-*s  %-14s %s\n", width, m.Key, m.Type, m.Value)
	}
}

func orNone(s string) string {
	if s == "" {
		return "(not set)"
	}
	return s
}

// group writes n with thousands separators.
func group(n uint64) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
