package compose

import (
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
)

// TestStartOrder builds projects in code (no loader) and checks the order
// Translate gives and the problems it names.
func TestStartOrder(t *testing.T) {
	dep := func(conds ...string) types.DependsOnConfig {
		d := types.DependsOnConfig{}
		for i := 0; i+1 < len(conds); i += 2 {
			d[conds[i]] = types.ServiceDependency{Condition: conds[i+1], Required: true}
		}
		return d
	}
	svc := func(name string, deps types.DependsOnConfig) types.ServiceConfig {
		return types.ServiceConfig{Name: name, ContainerSpec: types.ContainerSpec{Image: "x"}, WorkloadSpec: types.WorkloadSpec{DependsOn: deps}}
	}
	cases := []struct {
		name     string
		services []types.ServiceConfig
		want     string // order, or the error's words
		wantErr  bool
	}{
		{name: "independent, by name", services: []types.ServiceConfig{svc("b", nil), svc("a", nil)}, want: "a b"},
		{name: "chain", services: []types.ServiceConfig{svc("a", dep("b", ConditionHealthy)), svc("b", dep("c", ConditionStarted)), svc("c", nil)}, want: "c b a"},
		{name: "diamond", services: []types.ServiceConfig{svc("web", dep("api", ConditionHealthy, "db", ConditionStarted)), svc("api", dep("db", ConditionHealthy)), svc("db", nil)}, want: "db api web"},
		{name: "completed makes batch", services: []types.ServiceConfig{svc("web", dep("migrate", ConditionCompleted)), svc("migrate", nil)}, want: "migrate web"},
		{name: "cycle", services: []types.ServiceConfig{svc("a", dep("b", ConditionStarted)), svc("b", dep("a", ConditionStarted))}, want: "services a, b depend on each other in a cycle", wantErr: true},
		{name: "missing", services: []types.ServiceConfig{svc("a", dep("nope", ConditionStarted))}, want: `depends on "nope"`, wantErr: true},
		{name: "bad name", services: []types.ServiceConfig{svc("---", nil)}, want: "does not make a Gantry job name", wantErr: true},
		{name: "same job", services: []types.ServiceConfig{svc("my_api", nil), svc("my-api", nil)}, want: `both become job "my-api"`, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := &types.Project{Name: "p", Services: types.Services{}}
			for _, s := range tc.services {
				p.Services[s.Name] = s
			}
			res, err := Translate(p, Options{})
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want one saying %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range res.Services {
				got = append(got, s.Name)
			}
			if strings.Join(got, " ") != tc.want {
				t.Errorf("order %v, want %s", got, tc.want)
			}
			if tc.name == "completed makes batch" && res.Lookup("migrate").Job.Type != "batch" {
				t.Errorf("a service others wait to complete must be batch work, got %s", res.Lookup("migrate").Job.Type)
			}
		})
	}
}
