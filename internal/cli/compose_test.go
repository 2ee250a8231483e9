package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestComposeLoaderWarningsReadAsTheCommands: compose-go's own warnings
// (it logs through logrus; an obsolete top-level version, in most older
// public Compose files) come out as one "Warning: …" line like the
// command's others, not as a logrus record with a timestamp and a level.
func TestComposeLoaderWarningsReadAsTheCommands(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(file, []byte("version: \"3.9\"\nservices:\n  web:\n    image: nginx:alpine\n    read_only: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errw bytes.Buffer
	if code := Main([]string{"compose", "-f", file, "config"}, &out, &errw); code != 0 {
		t.Fatalf("compose config: exit %d\n%s", code, errw.String())
	}
	want := "Warning: " + file + ": the attribute `version` is obsolete"
	if !strings.Contains(errw.String(), want) || strings.Contains(errw.String(), "level=") {
		t.Errorf("standard error %q: want a line starting %q and no logrus record", errw.String(), want)
	}
	if !strings.Contains(out.String(), "read_only_rootfs: true") {
		t.Errorf("compose config printed no read_only_rootfs: true for read_only: true:\n%s", out.String())
	}
}
