package jobspec

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
)

// FuzzParse feeds arbitrary text to Parse. It must never panic; a rejected
// spec must come back as *Errors; an accepted job must survive a JSON round
// trip through Parse and through the server's path unchanged and valid.
//
//	go test -run='^$' -fuzz=FuzzParse -fuzztime=30s ./internal/jobspec/
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/*")
	for _, file := range files {
		if strings.HasSuffix(file, ".err") {
			continue
		}
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(filepath.Base(file), data)
	}
	for _, tc := range ruleCases {
		f.Add("t.yaml", []byte(tc.spec))
	}
	recoverPanics = false
	f.Cleanup(func() { recoverPanics = true })

	f.Fuzz(func(t *testing.T, name string, data []byte) {
		job, err := Parse(name, data)
		lines := NewLocator(name, data)
		if l := lines.Line("groups[0].tasks[0].resources.gpu.mig"); l < 0 || job != nil && l < 1 {
			t.Fatalf("Locator gives line %d", l)
		}
		if err != nil {
			var errs *Errors
			if !errors.As(err, &errs) || len(errs.Fields) == 0 {
				t.Fatalf("rejected with %T %v, want *Errors with at least one problem", err, err)
			}
			if job != nil {
				t.Fatal("a job came back with the error")
			}
			for _, fe := range errs.Fields {
				if fe.Message == "" || fe.Line < 0 {
					t.Fatalf("malformed problem %+v", fe)
				}
			}
			return
		}
		first, err := json.Marshal(job)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse("roundtrip.json", first)
		if err != nil {
			t.Fatalf("the job's own JSON is rejected:\n%v\n%s", err, first)
		}
		if second, _ := json.Marshal(again); !bytes.Equal(first, second) {
			t.Fatalf("JSON round trip changed the job:\n%s\n%s", first, second)
		}
		var server api.Job
		if err := json.Unmarshal(first, &server); err != nil {
			t.Fatal(err)
		}
		Canonicalize(&server)
		if errs := Validate(&server); len(errs) > 0 {
			t.Fatalf("Validate rejects an accepted job after a JSON round trip: %v\n%s", errs, first)
		}
	})
}

// FuzzParseDockerVolume: a named volume either parses into a valid name
// and an absolute container path other than /, or is refused with a
// reason; it never panics.
func FuzzParseDockerVolume(f *testing.F) {
	for _, s := range []string{"data:/var/lib/data", "data:/d:ro", "data:/d:rw", "/host:/c", "x:relative", "d:/", "a:b:c:d", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, problem := ParseDockerVolume(s)
		if problem != "" {
			return
		}
		if !dockerVolumeName.MatchString(v.Source) || !strings.HasPrefix(v.Target, "/") || path.Clean(v.Target) == "/" {
			t.Fatalf("ParseDockerVolume(%q) accepted %+v", s, v)
		}
	})
}
