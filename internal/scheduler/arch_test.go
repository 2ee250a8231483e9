package scheduler_test

import (
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The decision core is pure: no clock, no global random source, no I/O.
// This test parses every non-test file of internal/scheduler (with its
// subpackages), internal/gpu, internal/defrag and internal/defragplan that a CGO_ENABLED=0 build compiles (so a
// build-tagged NVML file in internal/gpu is left out) and rejects:
//   - imports of os, net, io, syscall, unsafe, os/…, net/…, io/…;
//   - time.Now, time.Since, time.Until, time.Tick, time.After, time.NewTimer,
//     time.NewTicker, time.Sleep, time.AfterFunc;
//   - package-level functions of math/rand and math/rand/v2 other than the
//     constructors of explicitly seeded sources.
func TestArchitecturePureCore(t *testing.T) {
	ctx := build.Default
	ctx.CgoEnabled = false
	forbiddenTime := map[string]bool{"Now": true, "Since": true, "Until": true, "Tick": true, "After": true,
		"NewTimer": true, "NewTicker": true, "Sleep": true, "AfterFunc": true}
	allowedRand := map[string]bool{"New": true, "NewSource": true, "NewPCG": true, "NewChaCha8": true, "NewZipf": true,
		"Rand": true, "Source": true, "PCG": true, "ChaCha8": true, "Zipf": true}
	checked := 0
	for _, root := range []string{".", "../gpu", "../defrag", "../defragplan"} {
		err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if d.Name() == "testdata" {
					return filepath.SkipDir
				}
				return nil
			}
			name := d.Name()
			if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
				return nil
			}
			if ok, err := ctx.MatchFile(filepath.Dir(path), name); err != nil || !ok {
				return err
			}
			checked++
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			local := map[string]string{} // local name → import path
			for _, im := range f.Imports {
				p, _ := strconv.Unquote(im.Path.Value)
				top := strings.SplitN(p, "/", 2)[0]
				if p == "syscall" || p == "unsafe" || top == "os" || top == "net" || top == "io" || p == "os" || p == "net" || p == "io" {
					t.Errorf("%s imports %s: the scheduler core does no I/O", fset.Position(im.Pos()), p)
				}
				n := p[strings.LastIndex(p, "/")+1:]
				if p == "math/rand/v2" {
					n = "rand"
				}
				if im.Name != nil {
					n = im.Name.Name
				}
				local[n] = p
			}
			ast.Inspect(f, func(x ast.Node) bool {
				sel, ok := x.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				id, ok := sel.X.(*ast.Ident)
				if !ok {
					return true
				}
				switch local[id.Name] {
				case "time":
					if forbiddenTime[sel.Sel.Name] {
						t.Errorf("%s uses time.%s: take the time as an argument", fset.Position(sel.Pos()), sel.Sel.Name)
					}
				case "math/rand", "math/rand/v2":
					if !allowedRand[sel.Sel.Name] {
						t.Errorf("%s uses the global rand.%s: use a seeded source", fset.Position(sel.Pos()), sel.Sel.Name)
					}
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if checked < 10 {
		t.Fatalf("checked only %d files", checked)
	}
}
