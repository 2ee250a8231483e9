package nvml

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoCgoOfOurOwn: the Makefile and scripts/demo.sh build with
// CGO_CFLAGS=-Wno-deprecated-declarations to silence the deprecation
// warnings of the NVML bindings (go-nvml, third-party cgo). That is
// safe only while Gantry has no cgo code of its own, whose warnings it
// would hide too; this keeps it so.
func TestNoCgoOfOurOwn(t *testing.T) {
	root := filepath.Join("..", "..", "..")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") && p != root) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.Contains(string(data), "\nimport \"C\"") || strings.Contains(string(data), "\n\t\"C\"\n") {
			t.Errorf("%s uses cgo: the build-wide CGO_CFLAGS that silences go-nvml's warnings would hide this file's too; pass it per package instead", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
