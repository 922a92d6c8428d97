// Package rpcerrtest checks a kind's error table against its source: a
// reason added without a code would reach generic gRPC tooling as Unknown.
package rpcerrtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"testing"

	"github.com/vramward/vramward/sdk/internal/rpcerr"
)

// EveryReasonHasACode fails t for each constant of type Reason declared in
// file that table gives no code.
func EveryReasonHasACode[R ~string](t *testing.T, file string, table rpcerr.Codes[R]) {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Reason" {
				continue
			}
			for _, v := range vs.Values {
				lit, ok := v.(*ast.BasicLit)
				if !ok {
					continue
				}
				reason, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				n++
				if _, ok := table[R(reason)]; !ok {
					t.Errorf("reason %s has no gRPC code", reason)
				}
			}
		}
	}
	if n == 0 || n != len(table) {
		t.Errorf("%s declares %d reasons, the table has %d", file, n, len(table))
	}
}
