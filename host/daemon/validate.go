package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"

	"github.com/vramward/vramward/host/config"
	"github.com/vramward/vramward/host/pluginhost"
	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/schema"
)

// CheckPluginConfigs asks every plugin a sink uses for its config schema
// (the Info RPC only: nothing is configured, opened or written) and decodes
// each sink's config block against it.
func CheckPluginConfigs(cfg *config.Config, log hclog.Logger) hcl.Diagnostics {
	var diags hcl.Diagnostics
	launcher := &pluginhost.Launcher{Logger: log.Named("plugin"), LogLevel: "warn"}
	schemas := map[string]schema.Schema{}
	for _, s := range cfg.Audit.Sinks {
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

func fetchSchema(l *pluginhost.Launcher, p *config.Plugin) (schema.Schema, error) {
	m, err := audit.NewMetrics(nopRegisterer{})
	if err != nil {
		return nil, err
	}
	proc, err := l.Launch(pluginhost.Spec{Name: p.Name, Kind: p.Kind, Path: p.Path, SHA256: p.SHA256, StartTimeout: p.StartTimeout},
		audit.PluginForHost(audit.ClientOptions{Sink: p.Name, Metrics: m}))
	if err != nil {
		return nil, err
	}
	defer proc.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := proc.Raw.(*audit.Client).Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: info: %w", p.Name, err)
	}
	return info.Schema, nil
}
