package compose

import (
	"bytes"
	"context"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// FuzzTranslate loads arbitrary Compose text with compose-go (in memory)
// and translates what loads: Translate must never panic, and must be a
// function of its input (the same project renders the same twice).
func FuzzTranslate(f *testing.F) {
	for _, seed := range []string{
		"services:\n  a:\n    image: x\n",
		"services:\n  a:\n    image: x\n    ports: ['8080:80', '9090']\n    expose: ['7000']\n    depends_on: {b: {condition: service_healthy}}\n  b:\n    image: y\n    restart: 'no'\n",
		"services:\n  a:\n    image: x\n    deploy: {replicas: 3, resources: {limits: {cpus: '0.5', memory: 1G}, reservations: {devices: [{capabilities: [gpu], count: 2}]}}}\n",
		"services:\n  a:\n    image: x\n    healthcheck: {test: ['CMD-SHELL', 'true'], interval: 1s, retries: 2}\n    x-gantry: {gpu: {mig: 1g.10gb}}\n",
		"services:\n  a:\n    image: x\n    deploy: {placement: {constraints: ['node.labels.zone == a', 'node.role == worker']}, restart_policy: {condition: on-failure}}\n",
		"services:\n  a:\n    image: x\n    volumes: ['data:/d', '/h:/c:ro']\nvolumes:\n  data: {}\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		details := types.ConfigDetails{
			WorkingDir:  t.TempDir(),
			ConfigFiles: []types.ConfigFile{{Filename: "compose.yaml", Content: data}},
			Environment: types.Mapping{},
		}
		p, err := loader.LoadWithContext(context.Background(), details, func(o *loader.Options) {
			o.SetProjectName("fuzz", true)
			o.SkipResolveEnvironment = true
		})
		if err != nil || p == nil {
			return
		}
		r1, err1 := Translate(p, Options{})
		r2, err2 := Translate(p, Options{})
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("Translate is not deterministic: %v then %v", err1, err2)
		}
		if err1 != nil {
			if err1.Error() != err2.Error() {
				t.Fatalf("Translate is not deterministic:\n%v\n%v", err1, err2)
			}
			return
		}
		a, err := Render(r1)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := Render(r2)
		if !bytes.Equal(a, b) {
			t.Fatalf("Render is not deterministic:\n%s\n%s", a, b)
		}
	})
}
