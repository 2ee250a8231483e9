package jobspec

import (
	"errors"
	"path"
	"strings"
	"testing"
)

// wasmSpec is a wasm job whose task config is cfg (a YAML flow mapping).
func wasmSpec(cfg string) string {
	return `name: w
type: batch
groups:
  - name: g
    tasks:
      - name: t
        driver: wasm
        config: ` + cfg + `
        resources: {cpu: 100, memory: 32}
`
}

func TestWasmConfig(t *testing.T) {
	sum := "sha256:" + strings.Repeat("0a", 32)
	for _, tc := range []struct {
		name string
		cfg  string
		want []string // every error, located; none for a valid config
	}{
		{"module", `{module: /opt/app.wasm, args: [a], env: {K: v}, mounts: [{source: local, target: /data}], ports: [{name: http}]}`, nil},
		{"artifact", `{artifact: {source: "https://example.com/app.wasm", checksum: "` + sum + `"}}`, nil},
		{"neither", `{args: [a]}`, []string{`groups[0].tasks[0].config.module: is required by the wasm driver: a .wasm file on the node, or use config.artifact to download one (t.yaml:8)`}},
		{"both", `{module: /a.wasm, artifact: {source: "https://x/a.wasm", checksum: "` + sum + `"}}`,
			[]string{`groups[0].tasks[0].config.artifact: cannot be given with config.module; use one of the two (t.yaml:8)`}},
		{"relative module", `{module: app.wasm}`, []string{`groups[0].tasks[0].config.module: "app.wasm" must be an absolute path of a .wasm file on the node (t.yaml:8)`}},
		{"bad source and checksum", `{artifact: {source: "ftp://x/a.wasm", checksum: "md5:abc"}}`, []string{
			`groups[0].tasks[0].config.artifact.source: "ftp://x/a.wasm" is not an http or https URL (t.yaml:8)`,
			`groups[0].tasks[0].config.artifact.checksum: "md5:abc" is not a checksum; write "sha256:" and 64 lower-case hex digits (t.yaml:8)`}},
		{"mount escapes", `{module: /a.wasm, mounts: [{source: ../x, target: /data}, {source: y, target: /}]}`, []string{
			`groups[0].tasks[0].config.mounts[0].source: "../x" leaves the task directory; give a relative path under it, or an absolute host path (t.yaml:8)`,
			`groups[0].tasks[0].config.mounts[1].target: "/" must be an absolute path other than / (the task directory is the module's /) (t.yaml:8)`}},
		{"docker keys", `{module: /a.wasm, image: x, volumes: ["/a:/b"], ports: [{name: http, to: 80}]}`, []string{
			`groups[0].tasks[0].config.image: does not apply to the wasm driver; give the module with config.module or config.artifact (t.yaml:8)`,
			`groups[0].tasks[0].config.ports[0].to: must be left out for the wasm driver: the module is handed a listener on the host port itself (GANTRY_LISTEN_FD_HTTP) (t.yaml:8)`,
			`groups[0].tasks[0].config.volumes: applies only to the docker driver; a wasm module reaches only what it is handed (config.mounts, config.ports) (t.yaml:8)`}},
		{"unknown key", `{module: /a.wasm, modul: x}`, []string{`groups[0].tasks[0].config.modul`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(wasmSpec(tc.cfg)))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("valid config refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want %v", tc.want)
			}
			got := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("missing %q in:\n%s", w, got)
				}
			}
		})
	}
	// The wasm keys on another driver.
	spec := strings.Replace(wasmSpec(`{command: /bin/true, module: /a.wasm}`), "driver: wasm", "driver: exec", 1)
	if _, err := Parse("t.yaml", []byte(spec)); err == nil || !strings.Contains(err.Error(), "config.module: applies only to the wasm driver") {
		t.Fatalf("module on an exec task: %v", err)
	}
}

// FuzzWasmConfig decodes arbitrary text as a wasm task's config. Parse must
// never panic, a refusal is *Errors, and an accepted config names exactly
// one module source in a form the driver can use.
//
//	go test -run='^$' -fuzz=FuzzWasmConfig -fuzztime=30s ./internal/jobspec/
func FuzzWasmConfig(f *testing.F) {
	f.Add(`{module: /opt/app.wasm, args: [a], env: {K: v}, mounts: [{source: local, target: /data}], ports: [{name: http}]}`)
	f.Add(`{artifact: {source: "https://example.com/app.wasm", checksum: "sha256:` + strings.Repeat("0a", 32) + `"}}`)
	f.Add(`{module: /a.wasm, mounts: [{source: ../x, target: /}]}`)
	f.Add(`{artifact: {source: 1, checksum: [x]}}`)
	recoverPanics = false
	f.Cleanup(func() { recoverPanics = true })
	f.Fuzz(func(t *testing.T, cfg string) {
		job, err := Parse("t.yaml", []byte(wasmSpec(cfg)))
		if err != nil {
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("refusal is %T, not *Errors: %v", err, err)
			}
			return
		}
		c := job.Groups[0].Tasks[0].Config
		if (c.Module == "") == (c.Artifact == nil) {
			t.Fatalf("accepted a config with module %q and artifact %+v", c.Module, c.Artifact)
		}
		if c.Module != "" && !path.IsAbs(c.Module) {
			t.Fatalf("accepted relative module %q", c.Module)
		}
		if a := c.Artifact; a != nil && !sha256Checksum.MatchString(a.Checksum) {
			t.Fatalf("accepted checksum %q", a.Checksum)
		}
		for _, m := range c.Mounts {
			if !path.IsAbs(m.Target) || path.Clean(m.Target) == "/" {
				t.Fatalf("accepted mount target %q", m.Target)
			}
		}
	})
}
