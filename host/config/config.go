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
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"

	"github.com/vramward/vramward/host/witness"
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
	Network   bool
	DeclRange hcl.Range
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
	"plugin":  {"kind", "path", "sha256", "start_timeout", "network"},
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

func required(a attrs, name string, block *hcl.Block) {
	if _, ok := a.m[name]; !ok {
		a.errorf(block.DefRange, "Missing required argument", "The argument %q is required in a %s block.", name, block.Type)
	}
}

func checkName(b *hcl.Block, seen map[string]hcl.Range, diags *hcl.Diagnostics) (string, bool) {
	name := b.Labels[0]
	if !nameRE.MatchString(name) {
		*diags = append(*diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: fmt.Sprintf("Invalid %s name", b.Type),
			Detail: fmt.Sprintf("Names are 1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit; got %q.", name), Subject: b.LabelRanges[0].Ptr()})
		return name, false
	}
	if first, dup := seen[name]; dup {
		*diags = append(*diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: fmt.Sprintf("Duplicate %s %q", b.Type, name),
			Detail: fmt.Sprintf("A %s named %q is already declared at %s.", b.Type, name, pos(first)), Subject: b.LabelRanges[0].Ptr()})
		return name, false
	}
	seen[name] = b.DefRange
	return name, true
}

func decodeWorker(b *hcl.Block, ctx *hcl.EvalContext, dir string, diags *hcl.Diagnostics) Worker {
	// "token" is accepted by the schema only to be refused with a clear message.
	content, _ := blockContent(b, append(slices.Clone(Keys["worker"]), "token"), nil, diags)
	a := attrs{m: content.Attributes, ctx: ctx, diags: diags}
	if t, ok := a.m["token"]; ok {
		a.errorf(t.NameRange, "Inline tokens are not accepted", "The worker token is a secret and never written in the config: set token_credential, token_file or token_env instead.")
	}
	w := Worker{
		ID:              a.nonEmpty("id", ""),
		TokenFile:       a.nonEmpty("token_file", ""),
		TokenEnv:        a.nonEmpty("token_env", ""),
		TokenCredential: a.nonEmpty("token_credential", ""),
		StateDir:        a.nonEmpty("state_dir", ""),
		DeclRange:       b.DefRange,
	}
	required(a, "id", b)
	required(a, "state_dir", b)
	if w.ID != "" && !shardRE.MatchString(w.ID) {
		a.errorf(a.rangeOf("id", b.DefRange), "Invalid value for \"id\"", "A worker id is 1 to 128 letters, digits, '_', '.', ':' or '-'; got %q.", w.ID)
	}
	sources := 0
	for _, v := range []string{w.TokenFile, w.TokenEnv, w.TokenCredential} {
		if v != "" {
			sources++
		}
	}
	switch {
	case sources == 0:
		a.errorf(b.DefRange, "Missing worker token", "Set token_credential (a systemd credential, recommended), token_file (a file holding the token) or token_env (the variable holding it).")
	case sources > 1:
		a.errorf(a.rangeOf("token_env", a.rangeOf("token_credential", b.DefRange)), "Conflicting token sources", "Set one of token_credential, token_file and token_env.")
	}
	if c := w.TokenCredential; c != "" && (strings.ContainsAny(c, "/\x00") || c == "." || c == "..") {
		a.errorf(a.rangeOf("token_credential", b.DefRange), "Invalid value for \"token_credential\"", "A credential name is a file name in $CREDENTIALS_DIRECTORY, without '/'; got %q.", c)
	}
	if w.TokenFile != "" {
		w.TokenFile = resolve(dir, w.TokenFile)
	}
	if w.StateDir != "" {
		w.StateDir = resolve(dir, w.StateDir)
	}
	return w
}

func decodePlugin(b *hcl.Block, ctx *hcl.EvalContext, dir string, seen map[string]hcl.Range, diags *hcl.Diagnostics) *Plugin {
	name, ok := checkName(b, seen, diags)
	a := blockAttrs(b, Keys["plugin"], nil, ctx, diags)
	required(a, "kind", b)
	required(a, "path", b)
	p := &Plugin{
		Name:         name,
		Kind:         a.oneOf("kind", "", handshake.KindAuditSink, handshake.KindModelLoader, handshake.KindVramBackend),
		Path:         a.nonEmpty("path", ""),
		SHA256:       a.sha256("sha256"),
		StartTimeout: a.duration("start_timeout", DefaultStartTimeout, 100*time.Millisecond),
		Network:      a.boolean("network", false),
		DeclRange:    b.DefRange,
	}
	if p.Path != "" {
		p.Path = resolve(dir, p.Path)
	}
	if !ok {
		return nil
	}
	return p
}

func decodeAudit(b *hcl.Block, ctx *hcl.EvalContext, dir string, c *Config, diags *hcl.Diagnostics) Audit {
	content, _ := blockContent(b, Keys["audit"], []hcl.BlockHeaderSchema{{Type: "sink", LabelNames: []string{"name"}}, {Type: "witness", LabelNames: []string{"name"}}}, diags)
	a := attrs{m: content.Attributes, ctx: ctx, diags: diags}
	au := Audit{
		Require:            a.oneOf("require", DefaultRequire, "all", "any"),
		QueueSize:          int(a.integer("queue_size", DefaultQueueSize, 1, 10_000_000)),
		SpoolMaxBytes:      a.integer("spool_max_bytes", DefaultSpoolMaxBytes, 1<<20, 1<<40),
		BatchSize:          int(a.integer("batch_size", DefaultBatchSize, 1, 100_000)),
		BatchWait:          a.duration("batch_wait", DefaultBatchWait, 0),
		CriticalTimeout:    a.duration("critical_timeout", DefaultCriticalTimeout, 10*time.Millisecond),
		ShutdownTimeout:    a.duration("shutdown_timeout", DefaultShutdownTimeout, 100*time.Millisecond),
		EpochEvents:        int(a.integer("epoch_events", DefaultEpochEvents, 1, 1<<40)),
		EpochDuration:      a.duration("epoch_duration", DefaultEpochDuration, time.Second),
		CheckpointEvents:   int(a.integer("checkpoint_events", DefaultCheckpointEvents, 1, 1<<20)),
		CheckpointInterval: a.duration("checkpoint_interval", DefaultCheckpointInterval, 100*time.Millisecond),
	}
	seen, seenWitness := map[string]hcl.Range{}, map[string]hcl.Range{}
	for _, sb := range content.Blocks {
		if sb.Type == "witness" {
			if w := decodeWitness(sb, ctx, seenWitness, diags); w != nil {
				au.Witnesses = append(au.Witnesses, w)
			}
			continue
		}
		if s := decodeSink(sb, ctx, c, seen, diags); s != nil {
			au.Sinks = append(au.Sinks, s)
		}
	}
	if len(au.Sinks) == 0 && len(seen) == 0 {
		a.errorf(b.DefRange, "No audit sink", "The audit block needs at least one sink block: an audit trail nobody stores is no trail.")
	}
	return au
}

func decodeWitness(b *hcl.Block, ctx *hcl.EvalContext, seen map[string]hcl.Range, diags *hcl.Diagnostics) *Witness {
	name, ok := checkName(b, seen, diags)
	a := blockAttrs(b, Keys["witness"], nil, ctx, diags)
	required(a, "url", b)
	required(a, "key", b)
	w := &Witness{Name: name, URL: a.nonEmpty("url", ""), Key: a.nonEmpty("key", ""), DeclRange: b.DefRange}
	if w.URL != "" {
		if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			a.errorf(a.rangeOf("url", b.DefRange), "Invalid value for \"url\"", "A witness URL is its submission prefix, http:// or https:// with a host; got %q.", w.URL)
		}
	}
	if w.Key != "" {
		if _, err := witness.NewVerifier(w.Key); err != nil {
			a.errorf(a.rangeOf("key", b.DefRange), "Invalid value for \"key\"", "A witness key is its public key in signed-note verifier form (name+hash+base64, as `vramward witness -keygen` prints it): %v.", err)
		}
	}
	if !ok {
		return nil
	}
	return w
}

func decodeSink(b *hcl.Block, ctx *hcl.EvalContext, c *Config, seen map[string]hcl.Range, diags *hcl.Diagnostics) *Sink {
	name, ok := checkName(b, seen, diags)
	s := decodeUse(b, "sink", handshake.KindAuditSink, name, ctx, c, diags)
	if !ok {
		return nil
	}
	return s
}

// decodeUse reads a block holding `plugin` (a declared plugin of kind) and
// at most one config block.
func decodeUse(b *hcl.Block, role, kind, name string, ctx *hcl.EvalContext, c *Config, diags *hcl.Diagnostics) *PluginUse {
	content, _ := blockContent(b, Keys[role][:len(Keys[role])-1], []hcl.BlockHeaderSchema{{Type: "config"}}, diags)
	a := attrs{m: content.Attributes, ctx: ctx, diags: diags}
	required(a, "plugin", b)
	u := &PluginUse{Role: role, Name: name, Plugin: a.nonEmpty("plugin", ""), DeclRange: b.DefRange}
	if role == "vram" {
		u.RequireBackend = a.oneOf("require_backend", "", "cuda", "emulated")
	}
	ok := true
	if u.Plugin != "" {
		switch p := c.Plugin(u.Plugin); {
		case p == nil:
			a.errorf(a.rangeOf("plugin", b.DefRange), "Reference to an undeclared plugin",
				"No plugin block is named %q; declare it with plugin %q { kind = %q, path = ... }.", u.Plugin, u.Plugin, kind)
			ok = false
		case p.Kind != "" && p.Kind != kind:
			a.errorf(a.rangeOf("plugin", b.DefRange), "Plugin of the wrong kind",
				"Plugin %q is of kind %q; a %s needs one of kind %q.", u.Plugin, p.Kind, role, kind)
			ok = false
		}
	}
	for i, cb := range content.Blocks {
		if i > 0 {
			a.errorf(cb.DefRange, "Duplicate config block", "A %s has at most one config block; the first is at %s.", role, pos(content.Blocks[0].DefRange))
			continue
		}
		u.Body = cb.Body
	}
	if !ok {
		return nil
	}
	return u
}

func decodeModel(b *hcl.Block, ctx *hcl.EvalContext, dir string, seen, seenShards map[string]hcl.Range, diags *hcl.Diagnostics) *Model {
	name, ok := checkName(b, seen, diags)
	a := blockAttrs(b, Keys["model"], nil, ctx, diags)
	required(a, "path", b)
	required(a, "sha256", b)
	m := &Model{
		Name:      name,
		Path:      a.nonEmpty("path", ""),
		SHA256:    a.sha256("sha256"),
		Device:    int(a.integer("device", 0, 0, 1023)),
		ShardID:   a.nonEmpty("shard_id", name),
		DeclRange: b.DefRange,
	}
	if m.Path != "" {
		m.Path = resolve(dir, m.Path)
	}
	if !shardRE.MatchString(m.ShardID) {
		a.errorf(a.rangeOf("shard_id", b.DefRange), "Invalid value for \"shard_id\"", "A shard id is 1 to 128 letters, digits, '_', '.', ':' or '-'; got %q.", m.ShardID)
		ok = false
	} else if first, dup := seenShards[m.ShardID]; dup {
		a.errorf(a.rangeOf("shard_id", b.DefRange), "Duplicate shard id", "Shard id %q is already used by the model at %s.", m.ShardID, pos(first))
		ok = false
	} else {
		seenShards[m.ShardID] = b.DefRange
	}
	if !ok {
		return nil
	}
	return m
}

// checkListen refuses a listen address the host could not bind: it must be
// HOST:PORT with a port from 0 to 65535 and a host that is empty, an IP
// address or a host name (a dotted quad that is no IPv4 address is
// refused, not looked up).
func checkListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want HOST:PORT (%v)", err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	if host == "" || net.ParseIP(host) != nil {
		return nil
	}
	if strings.Trim(host, "0123456789.") == "" {
		return fmt.Errorf("%q is not an IPv4 address", host)
	}
	for _, label := range strings.Split(strings.TrimSuffix(host, "."), ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") ||
			strings.Trim(label, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != "" {
			return fmt.Errorf("%q is neither an IP address nor a host name", host)
		}
	}
	return nil
}
