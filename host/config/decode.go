package config

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/vramward/vramward/host/witness"
	"github.com/vramward/vramward/sdk/handshake"
)

// Decoding each block of the file into its typed form, with a diagnostic
// at file:line:col for every value refused.

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
		User:         a.user("user"),
		// A Go plugin needs some 16 MiB and a dozen threads to start.
		MemoryMaxBytes: a.limit("memory_max_bytes", 16<<20, 1<<50),
		PidsMax:        a.limit("pids_max", 16, 1<<22),
		DeclRange:      b.DefRange,
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
