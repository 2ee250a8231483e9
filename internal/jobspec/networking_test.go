package jobspec

import (
	"testing"

	"github.com/gantryhq/gantry/internal/api"
)

func TestServicesAndUpdateParse(t *testing.T) {
	spec := `name: web
groups:
  - name: web
    count: 3
    update: {min_healthy_time: 2s, auto_revert: true, canary: 1}
    services: [{name: web, port: http, lb: {port: 8000, policy: p2c}}]
    tasks:
      - name: server
        driver: docker
        config: {image: "demo:1", ports: [{name: http, to: 8080}]}
        resources: {cpu: 100, memory: 64}
`
	job, err := Parse("t.yaml", []byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	g := job.Groups[0]
	if u := g.Update; u.MaxParallel != 1 || u.MinHealthyTime.D().Seconds() != 2 || !u.AutoRevert || u.Canary != 1 ||
		u.HealthyDeadline.D() != DefaultHealthyDeadline || u.ProgressDeadline.D() != DefaultProgressDeadline {
		t.Fatalf("update %+v: keys left out take their defaults", u)
	}
	lb := g.Services[0].LB
	if lb.Port != 8000 || lb.PolicyOrDefault() != api.LBP2C || lb.ProtocolOrDefault() != api.LBProtocolHTTP {
		t.Fatalf("lb %+v", lb)
	}
}

func TestUpdateDefaultsRespectChosenValues(t *testing.T) {
	for _, tc := range []struct {
		block                      string
		minHealthy, healthy, progr string
	}{
		{"{}", "10s", "5m0s", "10m0s"},
		{"{min_healthy_time: 10m}", "10m0s", "0s", "0s"},
		{"{healthy_deadline: 0s, progress_deadline: 0s}", "10s", "0s", "0s"},
		{"{healthy_deadline: 20m}", "10s", "20m0s", "0s"},
	} {
		spec := "name: web\ngroups:\n  - name: web\n    update: " + tc.block + "\n    tasks:\n      - {name: s, driver: docker, config: {image: x}, resources: {cpu: 1, memory: 1}}\n"
		job, err := Parse("t.yaml", []byte(spec))
		if err != nil {
			t.Fatalf("%s: %v", tc.block, err)
		}
		u := job.Groups[0].Update
		if u.MinHealthyTime.String() != tc.minHealthy || u.HealthyDeadline.String() != tc.healthy || u.ProgressDeadline.String() != tc.progr {
			t.Errorf("%s: min_healthy_time %s healthy_deadline %s progress_deadline %s", tc.block, u.MinHealthyTime, u.HealthyDeadline, u.ProgressDeadline)
		}
	}
}
