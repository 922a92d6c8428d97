// Package metricnames finds the metric names this repository defines, for
// the tests that hold the README and the Grafana dashboard to the code.
package metricnames

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

var nameRE = regexp.MustCompile(`"(vramward_[a-z_]+)"`)

// Defined returns every quoted vramward_ name in the Go sources under roots,
// tests left out.
func Defined(roots ...string) (map[string]bool, error) {
	seen := map[string]bool{}
	for _, root := range roots {
		err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			src, err := os.ReadFile(p)
			for _, m := range nameRE.FindAllSubmatch(src, -1) {
				seen[string(m[1])] = true
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return seen, nil
}
