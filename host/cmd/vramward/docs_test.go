package main

import (
	"bytes"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/vramward/vramward/host/config"
	"github.com/vramward/vramward/internal/metricnames"
	"github.com/vramward/vramward/sdk/audit"
)

// The README is the operator's reference: every metric, config key, CLI
// flag and event type it names must exist in the code, and the reverse.

func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// section returns the README text from a "## title" heading to the next.
func section(doc, title string) string {
	i := strings.Index(doc, "\n## "+title+"\n")
	if i < 0 {
		return ""
	}
	rest := doc[i+len(title)+5:]
	if j := strings.Index(rest, "\n## "); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

var firstCellRE = regexp.MustCompile("(?m)^\\| `([^`]+)`")

func firstCells(s string) []string {
	var out []string
	for _, m := range firstCellRE.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

func sameSet(t *testing.T, what string, doc, code []string) {
	t.Helper()
	norm := func(l []string) string {
		l = append([]string(nil), l...)
		sort.Strings(l)
		return strings.Join(l, " ")
	}
	if norm(doc) != norm(code) {
		t.Errorf("%s differ:\nREADME %s\ncode   %s", what, norm(doc), norm(code))
	}
}

func TestReadmeEventTypes(t *testing.T) {
	var code []string
	for _, sp := range audit.Catalogue() {
		code = append(code, string(sp.Type))
	}
	sameSet(t, "event types", firstCells(section(readme(t), "Audit events")), code)
	for _, sp := range audit.Catalogue() {
		if !strings.Contains(readme(t), "| `"+string(sp.Type)+"` | "+sp.Severity.String()+" |") {
			t.Errorf("README gives %s another severity than %s", sp.Type, sp.Severity)
		}
	}
}

func TestReadmeMetrics(t *testing.T) {
	seen, err := metricnames.Defined("../..", "../../../sdk")
	if err != nil {
		t.Fatal(err)
	}
	var code []string
	for n := range seen {
		code = append(code, n)
	}
	sameSet(t, "metrics", firstCells(section(readme(t), "Metrics")), code)
}

func TestReadmeConfigKeys(t *testing.T) {
	conf := section(readme(t), "Configuration")
	blockRE := regexp.MustCompile("(?m)^\\*\\*`([a-z]+)[^`]*`\\*\\*")
	idx := blockRE.FindAllStringSubmatchIndex(conf, -1)
	documented := map[string][]string{}
	for i, m := range idx {
		end := len(conf)
		if i+1 < len(idx) {
			end = idx[i+1][0]
		}
		block := conf[m[2]:m[3]]
		for _, k := range firstCells(conf[m[1]:end]) {
			documented[block] = append(documented[block], strings.TrimSuffix(k, " { }"))
		}
	}
	for block, keys := range config.Keys {
		sameSet(t, "keys of "+block, documented[block], keys)
	}
	if len(documented) != len(config.Keys) {
		t.Errorf("README documents blocks %v, the code has %d", documented, len(config.Keys))
	}
}

func TestReadmeFlags(t *testing.T) {
	var code []string
	for _, args := range [][]string{{"run", "-help"}, {"validate", "-help"}, {"status", "-help"}, {"audit", "verify", "-help"}, {"audit", "checkpoint", "-help"}, {"audit", "prove", "-help"}, {"gguf", "inspect", "-help"}, {"witness", "-help"}} {
		var out bytes.Buffer
		run(args, &out, &out)
		for _, m := range regexp.MustCompile(`(?m)^  (-[a-z-]+)`).FindAllStringSubmatch(out.String(), -1) {
			if !contains(code, m[1]) {
				code = append(code, m[1])
			}
		}
	}
	sameSet(t, "flags", firstCells(section(readme(t), "Commands")), code)
}

func contains(l []string, s string) bool {
	for _, v := range l {
		if v == s {
			return true
		}
	}
	return false
}
