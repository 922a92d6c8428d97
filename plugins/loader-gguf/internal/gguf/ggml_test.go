package gguf

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	gt "github.com/vramward/vramward/sdk/gguftest"
)

// ggmlPackage is where .ci/run unpacks ggml's library, from the npm package
// @node-llama-cpp/linux-x64 3.22.1 (ggml v0.5.0); VRAMWARD_GGML_DIR points
// elsewhere.
const ggmlPackage = ".cache/vramward/node-llama-cpp-linux-x64-3.22.1/package/bins/linux-x64"

// ggmlCheck builds testdata/ggmlcheck against ggml's libggml-base.so, or
// skips (fails in CI) when the library is not there.
func ggmlCheck(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("VRAMWARD_GGML_DIR")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ggmlPackage)
	}
	if _, err := os.Stat(filepath.Join(dir, "libggml-base.so")); err != nil {
		if os.Getenv("VRAMWARD_CI") != "" {
			t.Fatalf("ggml's library is missing (%v): .ci/run unpacks @node-llama-cpp/linux-x64 3.22.1", err)
		}
		t.Skipf("ggml's library is not installed (%v); .ci/run installs it", err)
	}
	out := filepath.Join(t.TempDir(), "ggmlcheck")
	cmd := exec.Command("cc", "-O1", "-o", out, filepath.Join("testdata", "ggmlcheck", "ggmlcheck.c"),
		"-L", dir, "-l:libggml-base.so", "-Wl,-rpath,"+dir)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the ggml harness: %v\n%s", err, msg)
	}
	return out
}

// ggmlView is what ggml read of a file, or that it refused it.
type ggmlView struct {
	ok                                  bool
	version, nKV, nTensors, align, data uint64
	arch                                string
	template                            bool
	tensors                             []string // "name:offset"
}

// viewOf is the same from this reader.
func viewOf(f *File) ggmlView {
	v := ggmlView{ok: true, version: uint64(f.Version), nKV: f.KVCount, nTensors: uint64(len(f.Tensors)), align: f.Alignment, data: f.DataOffset, arch: "-"}
	if a, ok := f.Get("general.architecture"); ok && a.Type == TypeString {
		v.arch = a.Str
	}
	_, v.template = f.Get("tokenizer.chat_template")
	for _, t := range f.Tensors {
		v.tensors = append(v.tensors, fmt.Sprintf("%s:%d", t.Name, t.Offset))
	}
	return v
}

func (v ggmlView) String() string {
	return fmt.Sprintf("v%d kv=%d tensors=%d align=%d data=%d arch=%q template=%v %v", v.version, v.nKV, v.nTensors, v.align, v.data, v.arch, v.template, v.tensors)
}

func runGGML(t *testing.T, bin string, paths []string) map[string]ggmlView {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Stdin = strings.NewReader(strings.Join(paths, "\n") + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ggml harness: %v", err)
	}
	views := map[string]ggmlView{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) < 2 {
			continue
		}
		if f[1] != "OK" {
			views[f[0]] = ggmlView{}
			continue
		}
		if len(f) != 10 {
			t.Fatalf("ggml harness line: %q", sc.Text())
		}
		n := func(s string) uint64 { x, _ := strconv.ParseUint(s, 10, 64); return x }
		v := ggmlView{ok: true, version: n(f[2]), nKV: n(f[3]), nTensors: n(f[4]), align: n(f[5]), data: n(f[6]), arch: "-", template: f[8] == "1"}
		if f[7] != "-" {
			b, _ := hex.DecodeString(f[7])
			v.arch = string(b)
		}
		if f[9] != "" {
			for _, nt := range strings.Split(f[9], ",") {
				name, off, _ := strings.Cut(nt, ":")
				b, _ := hex.DecodeString(name)
				v.tensors = append(v.tensors, string(b)+":"+off)
			}
		}
		views[f[0]] = v
	}
	return views
}

// mutants makes n variants of a valid file: bytes set at random, integers
// of the header and metadata set to edge values, cuts and insertions.
func mutants(base []byte, headerLen int, n int, seed uint64) [][]byte {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	edges := []uint64{0, 1, 2, 3, 4, 31, 32, 33, 63, 64, 65, 1 << 31, 1<<32 - 1, 1 << 32, 1<<63 - 1, 1 << 63, 1<<64 - 1}
	var out [][]byte
	for i := 0; i < n; i++ {
		b := append([]byte(nil), base...)
		at := r.IntN(max(headerLen, 1))
		switch r.IntN(6) {
		case 0:
			b[at] = byte(r.IntN(256))
		case 1:
			b[at] = []byte{0, 0x1b, '\n', 'A', '.', 0xff}[r.IntN(6)]
		case 2:
			if at+4 <= len(b) {
				binary.LittleEndian.PutUint32(b[at:], uint32(edges[r.IntN(len(edges))]))
			}
		case 3:
			if at+8 <= len(b) {
				binary.LittleEndian.PutUint64(b[at:], edges[r.IntN(len(edges))])
			}
		case 4:
			b = b[:at]
		case 5:
			b = append(b[:at], append([]byte{byte(r.IntN(256))}, b[at:]...)...)
		}
		out = append(out, b)
	}
	return out
}

// fuzzCorpus decodes the inputs of testdata/fuzz/FuzzParse.
func fuzzCorpus(t *testing.T) [][]byte {
	files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzParse", "*"))
	var out [][]byte
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if q, ok := strings.CutPrefix(line, "[]byte("); ok {
				if s, err := strconv.Unquote(strings.TrimSuffix(q, ")")); err == nil {
					out = append(out, []byte(s))
				}
			}
		}
	}
	return out
}

// TestAgreesWithGGML loads every file of the malformed corpus, the fuzz
// corpus and a few thousand mutants of valid files with ggml's own reader
// and with this one: every file ggml refuses (or crashes on) is refused
// here, and where both read a file they read the same version, counts,
// alignment, data offset, architecture, chat-template presence and tensor
// names and offsets.
func TestAgreesWithGGML(t *testing.T) {
	bin := ggmlCheck(t)
	dir := t.TempDir()
	var inputs [][]byte
	var names []string
	add := func(name string, b []byte) {
		inputs, names = append(inputs, b), append(names, name)
	}
	malformed, _ := filepath.Glob(filepath.Join("testdata", "malformed", "*.gguf"))
	for _, p := range malformed {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		add("malformed/"+filepath.Base(p), b)
	}
	for i, b := range fuzzCorpus(t) {
		add(fmt.Sprintf("fuzz/%d", i), b)
	}
	valid := map[string]*gt.File{"small": gt.Small(), "many": gt.Many(6, 40), "v2": func() *gt.File { f := gt.Small(); f.Version = 2; return f }(),
		"scalar": func() *gt.File {
			f := gt.Small()
			f.Tensors = append(f.Tensors, gt.Tensor{Name: "scalar", Type: gt.GGMLF32, Bytes: 4}, gt.Tensor{Name: "q1", Dims: []uint64{128}, Type: 41, Bytes: 18})
			return f
		}(),
		"no-tensors": &gt.File{KV: []gt.KV{{Key: "general.architecture", Value: gt.Str("x")}, {Key: "general.alignment", Value: gt.U32(64)}}}}
	kinds := make([]string, 0, len(valid))
	for name := range valid {
		kinds = append(kinds, name)
	}
	sort.Strings(kinds) // the same mutants every run
	seed := uint64(1)
	for _, name := range kinds {
		f := valid[name]
		b := f.Bytes()
		add("valid/"+name, b)
		for i, m := range mutants(b, int(f.DataOffset()), 800, seed) {
			add(fmt.Sprintf("mutant/%s/%d", name, i), m)
		}
		seed++
	}
	paths := make([]string, len(inputs))
	for i, b := range inputs {
		paths[i] = filepath.Join(dir, fmt.Sprintf("%05d.gguf", i))
		if err := os.WriteFile(paths[i], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	views := runGGML(t, bin, paths)
	var ggmlRefused, bothRefused, onlyHere, compared int
	for i, p := range paths {
		g, ok := views[p]
		if !ok {
			t.Fatalf("%s: no answer from the ggml harness", names[i])
		}
		f, err := Parse(bytes.NewReader(inputs[i]), int64(len(inputs[i])), DefaultLimits())
		switch {
		case !g.ok && err == nil:
			t.Errorf("%s: ggml refuses it, this reader accepts it: %v", names[i], viewOf(f))
		case !g.ok:
			ggmlRefused++
			bothRefused++
		case err != nil:
			onlyHere++
		default:
			compared++
			if mine := viewOf(f); mine.String() != g.String() {
				t.Errorf("%s: read differently\n ggml: %v\n here: %v", names[i], g, mine)
			}
		}
	}
	t.Logf("%d files: ggml refused %d (all refused here too), refused only here %d, read by both and compared %d", len(paths), ggmlRefused, onlyHere, compared)
	if compared < 100 {
		t.Errorf("only %d files were read by both: the comparison proves little", compared)
	}
}
