package exec

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestRotatorKeepsLinesWhole(t *testing.T) {
	dir := t.TempDir()
	r, err := openRotator(dir, "t.stdout", 100, 3)
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	// Writes that end mid-line and chunks larger than a file.
	chunks := []string{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "a\nbb", "bb\n"}
	for i := 0; i < 40; i++ {
		chunks = append(chunks, "line "+strconv.Itoa(i)+" "+strings.Repeat("x", i)+"\n")
	}
	chunks = append(chunks, strings.Repeat("y", 30)+"\n"+strings.Repeat("z", 250)+"\n"+"tail")
	for _, c := range chunks {
		all.WriteString(c)
		if n, err := r.Write([]byte(c)); err != nil || n != len(c) {
			t.Fatalf("write %q: %d, %v", c, n, err)
		}
	}
	r.Close()
	idx := logIndexes(dir, "t.stdout")
	if len(idx) != 3 {
		t.Fatalf("files %v, want 3 kept", idx)
	}
	var kept strings.Builder
	for _, i := range idx {
		b, _ := os.ReadFile(filepath.Join(dir, "t.stdout."+strconv.Itoa(i)))
		if i != idx[len(idx)-1] && !strings.HasSuffix(string(b), "\n") {
			t.Errorf("file %d does not end with a whole line: %q", i, b)
		}
		kept.Write(b)
	}
	if !strings.HasSuffix(all.String(), kept.String()) {
		t.Errorf("kept files are not the end of the stream")
	}

	// Tail over file boundaries.
	lr, err := newLogReader(context.Background(), dir, "t.stdout", 3, false, func() bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(lr)
	lr.Close()
	if want := strings.Repeat("y", 30) + "\n" + strings.Repeat("z", 250) + "\n" + "tail"; string(b) != want {
		t.Errorf("tail 3 = %q", b)
	}
}
