package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"github.com/hashicorp/hcl/v2"
	"golang.org/x/sys/unix"

	"github.com/vramward/vramward/host/config"
	"github.com/vramward/vramward/host/pluginhost"
	"github.com/vramward/vramward/sdk/audit/sinkclient"
	"github.com/vramward/vramward/sdk/handshake"
	"github.com/vramward/vramward/sdk/loader"
	"github.com/vramward/vramward/sdk/schema"
	"github.com/vramward/vramward/sdk/vram"
)

// Preflight makes the checks `run` makes before it launches anything: the
// worker token (present, mode, length), the state directory, and every
// plugin binary (regular, executable, matching its pin). It has no side
// effects.
func Preflight(cfg *config.Config) hcl.Diagnostics {
	var diags hcl.Diagnostics
	if _, err := readToken(cfg.Worker); err != nil {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Worker token refused",
			Detail: err.Error(), Subject: cfg.Worker.DeclRange.Ptr()})
	}
	if err := checkStateDir(cfg.Worker.StateDir); err != nil {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid state_dir",
			Detail: err.Error(), Subject: cfg.Worker.DeclRange.Ptr()})
	}
	for _, m := range cfg.Models {
		if err := checkModelPath(m.Path); err != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Model refused",
				Detail: fmt.Sprintf("model %q: %v", m.Name, err), Subject: m.DeclRange.Ptr()})
		}
	}
	for _, p := range cfg.Plugins {
		spec := SpecOf(p)
		if p.User != nil && os.Geteuid() != 0 {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Plugin user refused",
				Detail: fmt.Sprintf("plugin %q: user = %q needs the host to run as root", p.Name, p.User.Name), Subject: p.DeclRange.Ptr()})
		}
		if err := pluginhost.CheckBinary(spec); err != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Plugin binary refused",
				Detail: err.Error(), Subject: p.DeclRange.Ptr()})
		}
	}
	return diags
}

// checkStateDir: an existing state_dir must be a directory that only its
// owner can enter (it holds the chain state and the spools); a missing one
// must be creatable under its nearest existing ancestor.
func checkStateDir(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err == nil {
			if !st.IsDir() {
				return fmt.Errorf("%s is not a directory", d)
			}
			if d == dir && st.Mode().Perm()&0o077 != 0 {
				return fmt.Errorf("%s is open to group or others (mode %04o); run chmod 700 on it", d, st.Mode().Perm())
			}
			// The host writes the log's state and spools there (or
			// creates the directory there): a read-only mount or a
			// directory it may not write is refused now, not at start.
			if err := unix.Access(d, unix.W_OK|unix.X_OK); err != nil {
				return fmt.Errorf("%s is not writable by the host: %w", d, err)
			}
			return nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if d == filepath.Dir(d) {
			return fmt.Errorf("%s cannot be created", dir)
		}
	}
}

// CheckPluginConfigs asks every plugin a sink or the loader uses for its config schema
// (the Info RPC only: nothing is configured, opened or written) and decodes
// each sink's config block against it.
func CheckPluginConfigs(cfg *config.Config, log hclog.Logger) hcl.Diagnostics {
	var diags hcl.Diagnostics
	launcher := &pluginhost.Launcher{Logger: log.Named("plugin"), LogLevel: "warn"}
	schemas := map[string]schema.Schema{}
	for _, s := range cfg.Uses() {
		if _, done := schemas[s.Plugin]; done {
			continue
		}
		p := cfg.Plugin(s.Plugin)
		sch, err := fetchSchema(launcher, p)
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot read the plugin's config schema",
				Detail: err.Error(), Subject: p.DeclRange.Ptr()})
			continue
		}
		schemas[s.Plugin] = sch
	}
	return append(diags, cfg.DecodePluginConfigs(schemas)...)
}

// fetchSchema launches p and asks it for its config schema (Info only).
func fetchSchema(l *pluginhost.Launcher, p *config.Plugin) (schema.Schema, error) {
	spec := SpecOf(p)
	var half plugin.Plugin
	switch p.Kind {
	case handshake.KindModelLoader:
		half = loader.PluginForHost(nil)
	case handshake.KindVramBackend:
		half = vram.PluginForHost(nil)
	default:
		m, err := sinkclient.NewMetrics(nopRegisterer{})
		if err != nil {
			return nil, err
		}
		half = sinkclient.Plugin(sinkclient.Options{Sink: p.Name, Metrics: m})
	}
	proc, err := l.Launch(context.Background(), spec, half)
	if err != nil {
		return nil, err
	}
	defer proc.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var sch schema.Schema
	switch c := proc.Raw.(type) {
	case *loader.Client:
		info, ierr := c.Info(ctx)
		sch, err = info.Schema, ierr
	case *sinkclient.Client:
		info, ierr := c.Info(ctx)
		sch, err = info.Schema, ierr
	case *vram.Client:
		info, ierr := c.Info(ctx)
		sch, err = info.Schema, ierr
	}
	if err != nil {
		return nil, fmt.Errorf("plugin %s: info: %w", p.Name, err)
	}
	return sch, nil
}

// checkModelPath: a model path must name a regular file the host can read
// (the loader refuses anything else at load time: a FIFO would block it, a
// device would feed it for ever).
func checkModelPath(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file (mode %s)", path, st.Mode().Type())
	}
	return nil
}
