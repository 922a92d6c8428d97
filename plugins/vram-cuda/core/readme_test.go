package core

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
)

func TestReadmeMatchesSchema(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var documented, keys []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\| (string|int)").FindAllStringSubmatch(string(b), -1) {
		documented = append(documented, m[1])
	}
	for _, a := range Schema {
		keys = append(keys, a.Name)
	}
	sort.Strings(documented)
	sort.Strings(keys)
	if strings.Join(documented, " ") != strings.Join(keys, " ") {
		t.Errorf("README keys %v, schema %v", documented, keys)
	}
}
