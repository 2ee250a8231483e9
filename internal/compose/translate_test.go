package compose

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/jobspec"
	"github.com/gantryhq/gantry/internal/validate"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestGolden loads each project of testdata with compose-go and checks its
// translation (warnings, errors, and every job as YAML) against
// testdata/<case>.golden. Run with -update to rewrite them after a change
// that is meant, and review the diff.
func TestGolden(t *testing.T) {
	cases := []struct {
		name     string
		files    []string
		profiles []string
		strict   bool
	}{
		{name: "basic"},
		{name: "deploy"},
		{name: "interpolation", files: []string{"compose.yaml", "override.yaml"}, profiles: []string{"debug"}},
		{name: "unsupported"},
		{name: "unsupported-strict", strict: true},
		{name: "bad-port"},
		{name: "bad-cycle"},
		{name: "bad-syntax"},
		{name: "bad-yaml"},
		{name: "bad-gpu"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dirName := strings.TrimSuffix(tc.name, "-strict")
			dir, err := filepath.Abs(filepath.Join("testdata", dirName))
			if err != nil {
				t.Fatal(err)
			}
			files := tc.files
			if files == nil {
				files = []string{"compose.yaml"}
			}
			for i := range files {
				files[i] = filepath.Join(dir, files[i])
			}
			got := translateCase(t, dir, files, tc.profiles, tc.strict)
			got = strings.ReplaceAll(got, dir, "$DIR")
			golden := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("translation of %s differs from %s (run with -update and review the diff):\n%s", dir, golden, got)
			}
		})
	}
}

// translateCase loads and translates one project and checks that every
// job it makes is a spec `gantry job run` accepts: it parses back from
// the YAML `compose config` prints, and passes the job's own rules.
func translateCase(t *testing.T, dir string, files, profiles []string, strict bool) string {
	t.Helper()
	p, err := Load(context.Background(), LoadOptions{
		Files: files, Project: "demo", Profiles: profiles, WorkingDir: dir,
		Env: []string{"GREETING=from-environment"},
	})
	if err != nil {
		return "load error: " + err.Error() + "\n"
	}
	res, err := Translate(p, Options{Strict: strict})
	if err != nil {
		return "translate error: " + err.Error() + "\n"
	}
	out, err := Render(res)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range res.Services {
		y, err := JobYAML(s.Job)
		if err != nil {
			t.Fatal(err)
		}
		job, err := jobspec.Parse(s.Name+".yaml", y)
		if err != nil {
			t.Errorf("service %s: the translated spec does not parse: %v\n%s", s.Name, err, y)
			continue
		}
		if invalid, _, _ := validate.Split(validate.Rules(job, nil)); len(invalid) > 0 {
			t.Errorf("service %s: the translated spec breaks the job rules: %v\n%s", s.Name, invalid, y)
		}
		// What `compose config` prints runs as the same job: a setting
		// whose zero value is a choice (read_only_rootfs: false) survives.
		for gi, g := range s.Job.Groups {
			for ti, task := range g.Tasks {
				if got := job.Groups[gi].Tasks[ti].Security; !reflect.DeepEqual(got, task.Security) {
					t.Errorf("service %s: task %s's security reads back as %+v from the YAML, translated %+v", s.Name, task.Name, got, task.Security)
				}
			}
		}
	}
	return string(out)
}

// TestDotEnvBesideTheFile: as docker compose does, the .env read is the
// one in the project directory, which is the first file's directory
// (not the directory the command runs in) unless --project-directory
// names another; there no .env is read.
func TestDotEnvBesideTheFile(t *testing.T) {
	file, err := filepath.Abs(filepath.Join("testdata", "interpolation", "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	image := func(o LoadOptions) string {
		t.Helper()
		p, err := Load(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		return p.Services["web"].Image
	}
	// WorkingDir, where the command runs, holds no .env.
	if got := image(LoadOptions{Files: []string{file}, WorkingDir: t.TempDir()}); got != "gantry-demo:1.4" {
		t.Errorf("image %q: the .env beside the file was not read", got)
	}
	// --project-directory names where .env is read.
	proj, other := t.TempDir(), t.TempDir()
	small := filepath.Join(other, "compose.yaml")
	for path, body := range map[string]string{
		small:                        "services:\n  web:\n    image: \"gantry-demo:${TAG:-latest}\"\n",
		filepath.Join(other, ".env"): "TAG=beside\n",
		filepath.Join(proj, ".env"):  "TAG=project\n",
	} {
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := image(LoadOptions{Files: []string{small}, ProjectDir: proj}); got != "gantry-demo:project" {
		t.Errorf("image %q with --project-directory: want the tag of that directory's .env", got)
	}
	if got := image(LoadOptions{Files: []string{small}}); got != "gantry-demo:beside" {
		t.Errorf("image %q: want the tag of the .env beside the file", got)
	}
}
