// Package layout holds the tests of the repository's import rules: the SDK
// is what plugin authors pull in, so it must not pull in the host; the
// shipped plugins build only on the SDK, as a third party's would.
package layout

import (
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const (
	root = "github.com/vramward/vramward"
	sdk  = root + "/sdk"
)

type pkg struct {
	ImportPath string
	Imports    []string
	Module     *struct{ Path string }
}

func list(t *testing.T, dir string, args ...string) []pkg {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-json"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v", args, err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func ours(path string) bool { return path == root || strings.HasPrefix(path, root+"/") }

// The SDK imports only itself of this repository, and its module requires
// nothing of the host's (no HCL, no cty, no Merkle tree).
func TestSDKImportsNothingOfTheHost(t *testing.T) {
	repo, _ := filepath.Abs("../..")
	for _, p := range list(t, repo, "./sdk/...") {
		for _, imp := range p.Imports {
			if ours(imp) && !strings.HasPrefix(imp, sdk+"/") && imp != sdk {
				t.Errorf("%s imports %s", p.ImportPath, imp)
			}
		}
	}
	cmd := exec.Command("go", "list", "-m", "all")
	cmd.Dir = filepath.Join(repo, "sdk")
	cmd.Env = append(cmd.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -m all in sdk/: %v", err)
	}
	for _, banned := range []string{"github.com/hashicorp/hcl", "github.com/zclconf/go-cty", "github.com/transparency-dev", "filippo.io/edwards25519", "github.com/NVIDIA"} {
		if strings.Contains(string(out), banned) {
			t.Errorf("the SDK module requires %s", banned)
		}
	}
}

// A shipped plugin imports the SDK and its own packages, nothing of the
// host (tests may use this repository's internal/ helpers).
func TestPluginsImportOnlyTheSDK(t *testing.T) {
	repo, _ := filepath.Abs("../..")
	for _, p := range list(t, repo, "./plugins/...") {
		own := strings.Join(strings.SplitN(p.ImportPath, "/", 6)[:5], "/") // github.com/vramward/vramward/plugins/<name>
		for _, imp := range p.Imports {
			if ours(imp) && !strings.HasPrefix(imp, sdk+"/") && imp != own && !strings.HasPrefix(imp, own+"/") {
				t.Errorf("%s imports %s", p.ImportPath, imp)
			}
		}
	}
}

// What a sink author builds on (the event model, the Sink interface, Serve,
// sanitising) pulls in nothing only the host needs: not the host's client
// of a sink, not its Prometheus metrics. The example sink's binary shows it.
func TestSinkFacingPackagesImportNothingHostOnly(t *testing.T) {
	repo, _ := filepath.Abs("../..")
	hostOnly := []string{sdk + "/audit/sinkclient", "github.com/prometheus/", sdk + "/audittest", sdk + "/plugintest"}
	check := func(dir string, pkgs ...string) {
		for _, p := range list(t, dir, append([]string{"-deps"}, pkgs...)...) {
			for _, banned := range hostOnly {
				if strings.HasPrefix(p.ImportPath, banned) {
					t.Errorf("%v depend on %s", pkgs, p.ImportPath)
				}
			}
		}
	}
	check(repo, sdk+"/audit", sdk+"/sanitize")
	check(filepath.Join(repo, "examples", "sink-jsonl"), ".")
}

// A catalogue field's name is written once, in its Fields type in
// sdk/audit: the host, the plugins and the rest of the SDK make and read
// catalogue events through audit.Make and audit.Decode, so that a writer
// and the verifier cannot drift apart on a name. (Tests may build
// malformed events by hand.)
func TestCatalogueFieldNamesLiveInSDKAudit(t *testing.T) {
	repo, _ := filepath.Abs("../..")
	byName := regexp.MustCompile(`audit\.(Str|Int|Uint|Bool)\("[a-z]|\.Field\("|audit\.New\(audit\.`)
	err := filepath.WalkDir(repo, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repo, path)
		if d.IsDir() && (rel == ".git" || rel == filepath.Join("sdk", "audit") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(src), "\n") {
			if byName.MatchString(line) {
				t.Errorf("%s:%d names a catalogue field outside sdk/audit: %s", rel, i+1, strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
