package compose

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/gantryhq/gantry/internal/api"
)

// serverFields are set by the server and never part of a spec.
var serverFields = []string{"version", "stop", "status", "submit_time", "modify_index"}

// chosenZero are the keys whose zero value is a choice, not an absence:
// a group's count, and the security settings whose default is true.
var chosenZero = map[string]bool{"count": true, "read_only_rootfs": true, "no_new_privileges": true}

// JobYAML writes a job as the YAML spec `gantry job run` reads: the keys
// the server sets left out, and every key at its zero value left out
// (except chosenZero's), so the file reads like one written by hand.
func JobYAML(j *api.Job) ([]byte, error) {
	b, err := json.Marshal(j)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for _, k := range serverFields {
		delete(m, k)
	}
	prune(m, "")
	return yaml.Marshal(m)
}

// prune removes zero values from a decoded JSON tree, in place; it
// reports whether v itself is now empty.
func prune(v any, key string) bool {
	switch x := v.(type) {
	case nil:
		return true
	case bool:
		return !x && !chosenZero[key]
	case float64:
		return x == 0 && !chosenZero[key]
	case string:
		return x == "" || x == "0s"
	case []any:
		for _, e := range x {
			prune(e, "")
		}
		return len(x) == 0
	case map[string]any:
		for k, e := range x {
			if prune(e, k) {
				delete(x, k)
			}
		}
		return len(x) == 0
	}
	return false
}

// Render writes a translated project as `gantry compose config` prints
// it: the warnings as comments, then one YAML document per service in
// start order, each headed by the service's name and dependencies.
func Render(r *Result) ([]byte, error) {
	var out bytes.Buffer
	fmt.Fprintf(&out, "# Compose project %q as Gantry jobs in namespace %q, in start order.\n", r.Project, r.Namespace)
	for _, w := range r.Warnings {
		fmt.Fprintf(&out, "# warning: %s\n", w)
	}
	for _, s := range r.Services {
		out.WriteString("---\n")
		fmt.Fprintf(&out, "# service %s", s.Name)
		if len(s.DependsOn) > 0 {
			deps := make([]string, len(s.DependsOn))
			for i, d := range s.DependsOn {
				deps[i] = d.Service + " (" + d.Condition + ")"
			}
			fmt.Fprintf(&out, ", after %s", strings.Join(deps, ", "))
		}
		out.WriteString("\n")
		b, err := JobYAML(s.Job)
		if err != nil {
			return nil, fmt.Errorf("render service %s: %w", s.Name, err)
		}
		out.Write(b)
	}
	return out.Bytes(), nil
}
