package jobspec

import "testing"

// TestLocator: paths found after parsing get the lines Parse would give,
// in YAML and in JSON; a key left out is placed at its parent.
func TestLocator(t *testing.T) {
	yamlSpec := `name: web
groups:
  - name: web
    update: {canary: 3}
    tasks:
      - name: server
        driver: docker
        config: {image: demo}
        resources:
          cpu: 100
          memory: 64
`
	jsonSpec := `{
  "name": "web",
  "groups": [
    {
      "name": "web",
      "tasks": [
        {"name": "server", "driver": "docker", "config": {"image": "demo"},
         "resources": {"cpu": 100,
                       "memory": 64}}
      ]
    }
  ]
}`
	for _, tc := range []struct {
		file, spec string
		want       map[string]int
	}{
		{"web.yaml", yamlSpec, map[string]int{
			"": 1, "name": 1, "namespace": 1, "groups[0]": 3, "groups[0].update.canary": 4,
			"groups[0].tasks[0].resources.memory": 11, "groups[0].tasks[0].resources.gpu.mig": 9, "groups[0].constraints": 3,
		}},
		{"web.json", jsonSpec, map[string]int{
			"": 1, "groups[0].tasks[0].resources.cpu": 8, "groups[0].tasks[0].resources.memory": 9, "groups[0].services[0].lb.port": 4,
		}},
		{"bad.yaml", "name: [", map[string]int{"": 0, "name": 0}},
	} {
		l := NewLocator(tc.file, []byte(tc.spec))
		for path, want := range tc.want {
			if got := l.Line(path); got != want {
				t.Errorf("%s: line of %q is %d, want %d", tc.file, path, got, want)
			}
		}
	}
}
