package reconcile_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The reconciler (and the service catalog it sits beside) is pure: this
// test rejects, in every non-test file of internal/reconcile and
// internal/discovery, imports that do I/O (os, net, io, syscall and their
// subpackages), reading the clock (time.Now, Since, Until, Sleep, timers)
// and the global random source.
func TestArchitecturePure(t *testing.T) {
	forbiddenTime := map[string]bool{"Now": true, "Since": true, "Until": true, "Tick": true, "After": true,
		"NewTimer": true, "NewTicker": true, "Sleep": true, "AfterFunc": true}
	checked := 0
	for _, dir := range []string{".", "../discovery"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range files {
			if strings.HasSuffix(path, "_test.go") {
				continue
			}
			checked++
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			local := map[string]string{}
			for _, im := range f.Imports {
				p, _ := strconv.Unquote(im.Path.Value)
				top := strings.SplitN(p, "/", 2)[0]
				if p == "syscall" || p == "unsafe" || top == "os" || top == "net" || top == "io" {
					t.Errorf("%s imports %s: the reconciler does no I/O", fset.Position(im.Pos()), p)
				}
				if strings.HasPrefix(p, "math/rand") {
					t.Errorf("%s imports %s: same input, same plan", fset.Position(im.Pos()), p)
				}
				n := p[strings.LastIndex(p, "/")+1:]
				if im.Name != nil {
					n = im.Name.Name
				}
				local[n] = p
			}
			ast.Inspect(f, func(x ast.Node) bool {
				if sel, ok := x.(*ast.SelectorExpr); ok {
					if id, ok := sel.X.(*ast.Ident); ok && local[id.Name] == "time" && forbiddenTime[sel.Sel.Name] {
						t.Errorf("%s uses time.%s: take the time from Input.Now", fset.Position(sel.Pos()), sel.Sel.Name)
					}
				}
				return true
			})
		}
	}
	if checked < 4 {
		t.Fatalf("checked only %d files", checked)
	}
}
