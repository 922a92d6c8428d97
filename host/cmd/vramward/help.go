package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// exitCode is one documented exit status of a command.
type exitCode struct {
	code    int
	meaning string
}

// command is what `vramward COMMAND -help` prints besides the flags; the
// README's "Exit codes" table is checked against codes by a test.
type command struct {
	name, synopsis, description string
	examples                    []string
	codes                       []exitCode
}

var usageCodes = exitCode{2, "bad command line: an unknown flag or argument, a missing or invalid value"}

var commands = map[string]command{
	"run": {
		name:     "run",
		synopsis: "vramward run -config FILE [-log-level LEVEL] [-new-log]",
		description: `Runs the host: starts the audit sinks and waits until audit.require is met
(or fails closed after their start_timeout), checks, loads and seals every
model, and keeps verifying the seals. SIGTERM or SIGINT shut it down in
order (shards released, HostStopped last, every sink flushed and closed);
SIGHUP asks every sink to reopen its output.`,
		examples: []string{"vramward run -config /etc/vramward/vramward.hcl", "VRAMWARD_LOG_LEVEL=debug vramward run -config vramward.hcl"},
		codes: []exitCode{
			{0, "clean shutdown, every event delivered"},
			{1, "the config, a plugin, the state dir or the audit sinks prevented the start; nothing was loaded"},
			usageCodes,
			{3, "stopped, but events were spooled for the next start or a sink did not close cleanly"},
		},
	},
	"validate": {
		name:     "validate",
		synopsis: "vramward validate -config FILE",
		description: `Makes every check run makes before it launches anything: the config and
each plugin's config block (plugins are started only to read their
schema), the worker token (present, mode, length), the state directory,
the plugin binaries (regular, executable, matching their pin) and the files
the sinks' configs name. Nothing is configured, opened for writing or
created. Every problem is printed at once as file:line:col.`,
		examples: []string{"vramward validate -config /etc/vramward/vramward.hcl"},
		codes: []exitCode{
			{0, "the config is valid"},
			{1, "the config has problems (printed)"},
			usageCodes,
		},
	},
	"status": {
		name:     "status",
		synopsis: "vramward status [-json] -config FILE | -socket PATH",
		description: `Asks the running host, over the unix socket in its state_dir (0600, its
own user only), what it holds: its state (serving or degraded, why and
since when), every plugin (pid, version, pinned sha256, restarts, last
crash), every audit sink (state, queue, spool, last acknowledged seq,
failures by severity), every model (sealed, or refused and why), every
sealed shard (device, backend, digest, sealed at, last verification) and
the audit trail (seq, epoch, last checkpoint). Nothing secret is in it.
Exits 0 only while the host is serving: a health check for scripts.`,
		examples: []string{"vramward status -config /etc/vramward/vramward.hcl", "vramward status -json -socket /var/lib/vramward/status.sock"},
		codes: []exitCode{
			{0, "the host is serving"},
			{1, "the host is degraded, starting or stopping, or does not answer"},
			usageCodes,
		},
	},
	"audit verify": {
		name:     "audit verify",
		synopsis: "vramward audit verify -key KEY [-copy FILE]... [-checkpoint FILE]... [-witness-key KEY]... [-quorum N] [-accept-loss FROM-TO]... [-live] TRAIL... | -fleet DIR -keys FILE [-live]",
		description: `Verifies an audit trail with the log's public key alone (state_dir/audit.pub,
kept off the node): every record's hash and link, the Merkle tree, every
signed checkpoint and the certification of each epoch's key. Files may be
given in any order (rotated sets, several runs); a syslog receiver's file is
read as it stored it. -copy verifies another copy and compares it seq by
seq; -checkpoint checks the trail is consistent with a checkpoint kept
elsewhere (a cut tail, a rollback, a fork); -witness-key checks every
cosignature of that witness and requires a checkpoint cosigned by -quorum
of them. Records after the last checkpoint fail unless -live (the host is
still running). A crash's AuditRecovered continues the log only from the
last checkpoint verified, through every checkpoint the host made since;
the seqs it cannot vouch for fail until accepted with -accept-loss, exactly
as the failure names them. Given the public key alone, verify warns that a
cut tail or a rollback cannot be seen. With -fleet, every node's
trail in a relay's directory is verified against an inventory of public
keys, in parallel, one line per node; a node without a trail, or a file of
no node, fails.`,
		examples: []string{"vramward audit verify -key /srv/fleet/node-1.pub /var/log/vramward/audit.log*",
			"vramward audit verify -key node-1.pub -checkpoint /srv/witness/node-1.checkpoint -copy /srv/syslog/node-1.log audit.log*",
			"vramward audit verify -fleet /var/log/vramward-fleet -keys /etc/vramward/fleet.keys"},
		codes: []exitCode{
			{0, "the trail verifies (notes may follow)"},
			{1, "a record is edited, missing, inserted, reordered or unsigned, a checkpoint, key, recovery or cosignature is forged, a loss is not accepted, or a copy, checkpoint or witness disagrees"},
			usageCodes,
		},
	},
	"audit checkpoint": {
		name:     "audit checkpoint",
		synopsis: "vramward audit checkpoint -config FILE",
		description: `Prints the latest signed checkpoint of the node's log (state_dir/checkpoint),
for a witness or a cron job to store off the node; "audit verify
-checkpoint" later proves the trail was not rolled back or rewritten.`,
		examples: []string{"vramward audit checkpoint -config /etc/vramward/vramward.hcl > /srv/witness/node-1.$(date +%s)"},
		codes: []exitCode{
			{0, "printed"},
			{1, "the config has problems, or there is no checkpoint yet"},
			usageCodes,
		},
	},
	"audit prove": {
		name:     "audit prove",
		synopsis: "vramward audit prove -key KEY [-witness-key KEY]... SEQ TRAIL... | vramward audit prove -key KEY [-witness-key KEY]... -check PROOF",
		description: `Prints an inclusion proof of the record with SEQ against the trail's last
checkpoint, in the C2SP tlog-proof format: the leaf index, the Merkle path
and the checkpoint, with the record and the signed notes from the first
key to the checkpoint's in its extra data. With -witness-key, against the
last checkpoint the witnesses cosigned, with their cosignatures. With
-check, checks such a proof with the public keys alone, without the rest of
the trail.`,
		examples: []string{"vramward audit prove -key node-1.pub 4711 /var/log/vramward/audit.log* > seq-4711.proof",
			"vramward audit prove -key node-1.pub -check seq-4711.proof"},
		codes: []exitCode{
			{0, "the proof was printed, or it checks"},
			{1, "the trail does not verify, the record is not covered by a checkpoint, or the proof does not check"},
			usageCodes,
		},
	},
	"gguf inspect": {
		name:     "gguf inspect",
		synopsis: ggufUsage,
		description: `Checks a GGUF file through the loader plugin, out of process, without
hashing it, and prints what it holds: format version, architecture,
counts, tensor types and every metadata pair (sanitised; the chat template
by size only).`,
		examples: []string{"vramward gguf inspect /models/llama.gguf", "vramward gguf inspect -json -config vramward.hcl /models/llama.gguf"},
		codes: []exitCode{
			{0, "the file is valid"},
			{1, "the file was refused (the reason, and for a malformed file the byte offset, printed)"},
			usageCodes,
		},
	},
	"witness": {
		name:     "witness",
		synopsis: "vramward witness -key-file FILE -state DIR -log KEY... [-listen ADDRESS] | vramward witness -keygen NAME -key-file FILE",
		description: `Runs a witness off the nodes (on the relay, say): it serves the C2SP
tlog-witness protocol (POST /add-checkpoint), cosigns a node's checkpoint
(tlog-cosignature/v1) only when it carries the node's identity signature and
a consistency proof from the last checkpoint it cosigned for that node, and
persists it before answering. A fork or a rollback is refused (409, 422).
GET /checkpoint?origin=vramward/<worker id> returns the latest cosigned
checkpoint, for "audit verify -checkpoint". -keygen makes the witness's key.`,
		examples: []string{"vramward witness -keygen witness.example/w1 -key-file /etc/vramward/witness.key",
			"vramward witness -key-file /etc/vramward/witness.key -state /var/lib/vramward-witness -log /srv/fleet/node-1.pub -listen 10.0.0.5:7380"},
		codes: []exitCode{
			{0, "stopped by SIGTERM or SIGINT, or the key was made"},
			{1, "the key, the state or an address could not be used"},
			usageCodes,
		},
	},
	"version": {
		name:        "version",
		synopsis:    "vramward version",
		description: "Prints the host's version, the plugin SDK's and the plugin protocol's.",
		examples:    []string{"vramward version"},
		codes:       []exitCode{{0, "printed"}, usageCodes},
	},
}

// newFlags makes the flag set of a command whose -help prints the whole
// help text.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	c := commands[name]
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { printHelp(stderr, c, fs) }
	return fs
}

func printHelp(w io.Writer, c command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: %s\n\n%s\n", c.synopsis, c.description)
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		fmt.Fprint(w, "\nFlags:\n")
		fs.PrintDefaults()
	}
	fmt.Fprint(w, "\nExamples:\n")
	for _, e := range c.examples {
		fmt.Fprintf(w, "  %s\n", e)
	}
	fmt.Fprint(w, "\nExit codes:\n")
	for _, ec := range c.codes {
		fmt.Fprintf(w, "  %d  %s\n", ec.code, ec.meaning)
	}
}

// usageError reports a bad command line the way flag does, with the
// command's synopsis, and returns exit code 2.
func usageError(stderr io.Writer, name, format string, args ...any) int {
	fmt.Fprintf(stderr, "vramward %s: %s\nusage: %s\nRun \"vramward %s -help\" for more.\n", name, fmt.Sprintf(format, args...), commands[name].synopsis, name)
	return usageCodes.code
}

// logLevels are the values -log-level takes.
var logLevels = []string{"trace", "debug", "info", "warn", "error"}

func validLogLevel(l string) bool {
	for _, v := range logLevels {
		if strings.EqualFold(l, v) {
			return true
		}
	}
	return false
}

// commandOrder is the order of the README's exit code table.
var commandOrder = []string{"run", "validate", "status", "audit verify", "audit checkpoint", "audit prove", "gguf inspect", "witness", "version"}

// exitCodeTable is the README's exit code table, made from commands.
func exitCodeTable() string {
	var b strings.Builder
	for _, name := range commandOrder {
		for _, ec := range commands[name].codes {
			fmt.Fprintf(&b, "| `%s` | `%d` | %s |\n", name, ec.code, ec.meaning)
		}
	}
	return strings.TrimSuffix(b.String(), "\n")
}
