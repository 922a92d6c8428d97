// Package config reads the host's HCL configuration into typed values. Every
// problem is a diagnostic with the file:line:col of the offending key or
// value, and all of them are reported at once. Plugin config blocks are kept
// as HCL bodies and decoded later against the schema each plugin publishes
// (DecodePluginConfigs), so they get the same diagnostics.
package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"

	"github.com/vramward/vramward/sdk/handshake"
)

// Config is a whole host configuration.
type Config struct {
	// File is the config file's path as given; Dir the directory relative
	// paths in it are resolved against.
	File string
	Dir  string
	// SHA256 is the hex digest of the file's bytes, recorded in HostStarted.
	SHA256 string

	Worker  Worker
	Metrics Metrics
	Plugins []*Plugin
	Audit   Audit
	// Loader is nil when the config has no loader block (and no models).
	Loader *Loader
	// Vram is nil when the config has no vram block: models are then
	// checked but not loaded.
	Vram   *Vram
	Models []*Model
	Verify Verify
}

// Worker identifies this host.
type Worker struct {
	ID string
	// The worker token is read from TokenFile or the environment variable
	// TokenEnv, never written in the config itself.
	TokenFile string
	// TokenCredential names a systemd credential (LoadCredential=) holding
	// the token: the file $CREDENTIALS_DIRECTORY/NAME.
	TokenCredential string
	// DeclRange is the worker block's, for diagnostics about its values.
	DeclRange hcl.Range
	TokenEnv  string
	StateDir  string
}

// Metrics is the Prometheus endpoint.
type Metrics struct {
	Listen string
}

// DefaultMetricsListen keeps the endpoint off the network unless asked.
const DefaultMetricsListen = "127.0.0.1:9464"

// Plugin is a plugin binary the host may launch.
type Plugin struct {
	Name   string
	Kind   string
	Path   string
	SHA256 string // "" when not pinned
	// StartTimeout bounds the handshake; go-plugin's one-minute default
	// would hide a broken plugin for too long.
	StartTimeout time.Duration
	// Network lets the plugin use TCP (the host's sandbox refuses it
	// otherwise): a syslog sink sending over tcp, tls or relp needs it.
	Network bool
	// User runs the plugin as this user (and its primary group) instead
	// of the host's; only a host running as root can. "" keeps the host's.
	User *PluginUser
	// MemoryMaxBytes and PidsMax are the plugin's cgroup limits (its
	// memory, its processes and threads): -1 when not set (the kind's
	// default applies), 0 for none.
	MemoryMaxBytes int64
	PidsMax        int64
	DeclRange      hcl.Range
}

// PluginUser is the account a plugin runs as, looked up when the config is
// read.
type PluginUser struct {
	Name     string
	UID, GID int
}

// Audit is the audit bus and its sinks.
type Audit struct {
	// Require says which sinks must make a CRITICAL event durable before
	// the emit returns: "all" or "any".
	Require   string
	QueueSize int
	// SpoolMaxBytes caps each sink's spool file.
	SpoolMaxBytes int64
	BatchSize     int
	BatchWait     time.Duration
	// CriticalTimeout bounds how long a CRITICAL emit waits for the
	// required sinks before it fails.
	CriticalTimeout time.Duration
	ShutdownTimeout time.Duration
	// EpochEvents and EpochDuration end a signing epoch (its key is then
	// erased); CheckpointEvents and CheckpointInterval bound the records
	// no signed checkpoint covers yet.
	EpochEvents        int
	EpochDuration      time.Duration
	CheckpointEvents   int
	CheckpointInterval time.Duration
	Sinks              []*Sink
	// Witnesses cosign the log's checkpoints off the node.
	Witnesses []*Witness
}

// Witness is a C2SP tlog-witness the host submits each checkpoint to.
type Witness struct {
	Name string
	// URL is the witness's submission prefix (add-checkpoint is below it).
	URL string
	// Key is the witness's public key (tlog-cosignature/v1 verifier key).
	Key       string
	DeclRange hcl.Range
}

// PluginUse is a block that runs a plugin with its own config block: an
// audit sink, or the model loader.
type PluginUse struct {
	// Role is "sink", "loader" or "vram"; Name is the sink's label ("" for
	// the others).
	Role   string
	Name   string
	Plugin string
	// Body is the raw `config {}` block (nil when absent), decoded by
	// DecodePluginConfigs into ConfigJSON.
	Body       hcl.Body
	ConfigJSON []byte
	DeclRange  hcl.Range
	// RequireBackend (vram only) refuses seals of any other backend.
	RequireBackend string
}

// Sink is one audit sink: a plugin of kind audit_sink and its config block.
type Sink = PluginUse

// Loader is the model loader: a plugin of kind model_loader and its config
// block (allowed_roots, max_file_bytes and the loader's own keys).
type Loader = PluginUse

// Vram is the VRAM backend: a plugin of kind vram_backend and its config
// block.
type Vram = PluginUse

// label names the block in messages.
func (u *PluginUse) label() string {
	if u.Role == "sink" {
		return fmt.Sprintf("sink %q, plugin %q", u.Name, u.Plugin)
	}
	return fmt.Sprintf("%s, plugin %q", u.Role, u.Plugin)
}

// Model is a model the worker loads, seals and keeps verifying.
type Model struct {
	Name      string
	Path      string
	SHA256    string
	Device    int
	ShardID   string
	DeclRange hcl.Range
}

// Verify is the periodic seal verification.
type Verify struct {
	Interval  time.Duration
	OnFailure string // "release" or "keep"
}

// Defaults, documented in the README's config reference.
const (
	DefaultRequire            = "all"
	DefaultQueueSize          = 10000
	DefaultSpoolMaxBytes      = 1 << 30
	DefaultBatchSize          = 512
	DefaultBatchWait          = 20 * time.Millisecond
	DefaultShutdownTimeout    = 10 * time.Second
	DefaultCriticalTimeout    = 5 * time.Second
	DefaultEpochEvents        = 10000
	DefaultEpochDuration      = 15 * time.Minute
	DefaultCheckpointEvents   = 1000
	DefaultCheckpointInterval = 10 * time.Second
	DefaultStartTimeout       = 5 * time.Second
	DefaultVerifyInterval     = 5 * time.Minute
)

var (
	nameRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)
	shardRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)
)

// Keys lists the attributes (and, for audit and sink, nested blocks) each
// block accepts. The decoders use it, and a test checks the README's config
// reference against it.
var Keys = map[string][]string{
	"worker":  {"id", "token_file", "token_env", "token_credential", "state_dir"},
	"metrics": {"listen"},
	"plugin":  {"kind", "path", "sha256", "start_timeout", "network", "user", "memory_max_bytes", "pids_max"},
	"audit": {"require", "queue_size", "spool_max_bytes", "batch_size", "batch_wait", "critical_timeout", "shutdown_timeout",
		"epoch_events", "epoch_duration", "checkpoint_events", "checkpoint_interval"},
	"sink":    {"plugin", "config"},
	"loader":  {"plugin", "config"},
	"vram":    {"plugin", "require_backend", "config"},
	"model":   {"path", "sha256", "device", "shard_id"},
	"verify":  {"interval", "on_failure"},
	"witness": {"url", "key"},
}

var rootSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "worker"}, {Type: "metrics"}, {Type: "plugin", LabelNames: []string{"name"}},
		{Type: "audit"}, {Type: "loader"}, {Type: "vram"}, {Type: "model", LabelNames: []string{"name"}}, {Type: "verify"},
	},
}

// Load reads and parses a config file. The returned files map serves
// diagnostic printing (hcl.NewDiagnosticTextWriter).
func Load(path string) (*Config, map[string]*hcl.File, hcl.Diagnostics) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot read the config file", Detail: err.Error()}}
	}
	return Parse(path, src)
}

// Parse parses config source; filename names it in diagnostics and anchors
// relative paths.
func Parse(filename string, src []byte) (*Config, map[string]*hcl.File, hcl.Diagnostics) {
	file, diags := hclsyntax.ParseConfig(src, filename, hcl.Pos{Line: 1, Column: 1})
	files := map[string]*hcl.File{filename: file}
	if diags.HasErrors() {
		return nil, files, diags
	}
	dir, err := filepath.Abs(filepath.Dir(filename))
	if err != nil {
		return nil, files, append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot resolve the config directory", Detail: err.Error()})
	}
	sum := sha256.Sum256(src)
	c := &Config{File: filename, Dir: dir, SHA256: hex.EncodeToString(sum[:])}
	ctx := evalContext(dir)

	content, d := file.Body.Content(rootSchema)
	diags = append(diags, d...)
	blocks := map[string][]*hcl.Block{}
	for _, b := range content.Blocks {
		blocks[b.Type] = append(blocks[b.Type], b)
	}
	fileRange := hcl.Range{Filename: filename, Start: hcl.Pos{Line: 1, Column: 1}, End: hcl.Pos{Line: 1, Column: 1}}

	if b := single(blocks["worker"], "worker", true, fileRange, &diags); b != nil {
		c.Worker = decodeWorker(b, ctx, dir, &diags)
	}
	c.Metrics.Listen = DefaultMetricsListen
	if b := single(blocks["metrics"], "metrics", false, fileRange, &diags); b != nil {
		a := blockAttrs(b, Keys["metrics"], nil, ctx, &diags)
		c.Metrics.Listen = a.nonEmpty("listen", DefaultMetricsListen)
		if err := checkListen(c.Metrics.Listen); err != nil {
			a.errorf(a.rangeOf("listen", b.DefRange), `Invalid value for "listen"`, "%q: %v.", c.Metrics.Listen, err)
		}
	}
	seen := map[string]hcl.Range{}
	for _, b := range blocks["plugin"] {
		if p := decodePlugin(b, ctx, dir, seen, &diags); p != nil {
			c.Plugins = append(c.Plugins, p)
		}
	}
	if b := single(blocks["audit"], "audit", true, fileRange, &diags); b != nil {
		c.Audit = decodeAudit(b, ctx, dir, c, &diags)
	}
	if b := single(blocks["loader"], "loader", false, fileRange, &diags); b != nil {
		c.Loader = decodeUse(b, "loader", handshake.KindModelLoader, "", ctx, c, &diags)
	}
	if b := single(blocks["vram"], "vram", false, fileRange, &diags); b != nil {
		c.Vram = decodeUse(b, "vram", handshake.KindVramBackend, "", ctx, c, &diags)
	}
	seen = map[string]hcl.Range{}
	seenShards := map[string]hcl.Range{}
	for _, b := range blocks["model"] {
		if m := decodeModel(b, ctx, dir, seen, seenShards, &diags); m != nil {
			c.Models = append(c.Models, m)
		}
	}
	if len(c.Models) > 0 && c.Loader == nil && len(blocks["loader"]) == 0 {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Missing loader block",
			Detail:  "Models are declared but no loader block says which plugin checks them: add loader { plugin = ..., config { allowed_roots = [...] } }.",
			Subject: c.Models[0].DeclRange.Ptr()})
	}
	c.Verify = Verify{Interval: DefaultVerifyInterval, OnFailure: "release"}
	if b := single(blocks["verify"], "verify", false, fileRange, &diags); b != nil {
		a := blockAttrs(b, Keys["verify"], nil, ctx, &diags)
		c.Verify.Interval = a.duration("interval", DefaultVerifyInterval, time.Second)
		c.Verify.OnFailure = a.oneOf("on_failure", "release", "release", "keep")
	}
	sortDiags(diags)
	return c, files, diags
}

// sortDiags orders diagnostics by position, keeping those without one first.
func sortDiags(diags hcl.Diagnostics) {
	at := func(d *hcl.Diagnostic) int {
		if d.Subject == nil {
			return -1
		}
		return d.Subject.Start.Byte
	}
	sort.SliceStable(diags, func(i, j int) bool { return at(diags[i]) < at(diags[j]) })
}

// Plugin returns the plugin block called name.
func (c *Config) Plugin(name string) *Plugin {
	for _, p := range c.Plugins {
		if p.Name == name {
			return p
		}
	}
	return nil
}

func evalContext(dir string) *hcl.EvalContext {
	return &hcl.EvalContext{
		Variables: map[string]cty.Value{"config_dir": cty.StringVal(dir)},
		Functions: map[string]function.Function{
			// abspath("x") resolves x against the config file's directory,
			// for plugin config values that must be absolute paths.
			"abspath": function.New(&function.Spec{
				Params: []function.Parameter{{Name: "path", Type: cty.String}},
				Type:   function.StaticReturnType(cty.String),
				Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
					return cty.StringVal(resolve(dir, args[0].AsString())), nil
				},
			}),
			// env("NAME") is the variable's value, "" when unset.
			"env": function.New(&function.Spec{
				Params: []function.Parameter{{Name: "name", Type: cty.String}},
				Type:   function.StaticReturnType(cty.String),
				Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
					return cty.StringVal(os.Getenv(args[0].AsString())), nil
				},
			}),
		},
	}
}

func resolve(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(dir, p)
}

// single returns the one block of a type, reporting a missing required one
// or a repeated one.
func single(bs []*hcl.Block, typ string, required bool, fileRange hcl.Range, diags *hcl.Diagnostics) *hcl.Block {
	if len(bs) == 0 {
		if required {
			*diags = append(*diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: fmt.Sprintf("Missing %s block", typ),
				Detail: fmt.Sprintf("The config needs a %s block.", typ), Subject: fileRange.Ptr()})
		}
		return nil
	}
	for _, extra := range bs[1:] {
		*diags = append(*diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: fmt.Sprintf("Duplicate %s block", typ),
			Detail: fmt.Sprintf("Only one %s block is allowed; the first is at %s.", typ, pos(bs[0].DefRange)), Subject: extra.DefRange.Ptr()})
	}
	return bs[0]
}

func pos(r hcl.Range) string {
	return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
}

// blockAttrs reads a block that holds the given attributes and nested block
// types; anything else is an "Unsupported argument/block" diagnostic.
func blockAttrs(b *hcl.Block, names []string, blockTypes []hcl.BlockHeaderSchema, ctx *hcl.EvalContext, diags *hcl.Diagnostics) attrs {
	content, _ := blockContent(b, names, blockTypes, diags)
	return attrs{m: content.Attributes, ctx: ctx, diags: diags}
}

func blockContent(b *hcl.Block, names []string, blockTypes []hcl.BlockHeaderSchema, diags *hcl.Diagnostics) (*hcl.BodyContent, bool) {
	s := &hcl.BodySchema{Blocks: blockTypes}
	for _, n := range names {
		s.Attributes = append(s.Attributes, hcl.AttributeSchema{Name: n})
	}
	content, d := b.Body.Content(s)
	*diags = append(*diags, d...)
	return content, !d.HasErrors()
}
