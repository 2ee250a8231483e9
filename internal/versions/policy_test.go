package versions

import (
	"strings"
	"testing"
	"time"
)

func TestDefaultPolicyParses(t *testing.T) {
	p, err := DefaultPolicy()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{Docker, Runc, Containerd, Etcd} {
		if _, ok := p.Components[c]; !ok {
			t.Errorf("the starting policy says nothing about %s", c)
		}
	}
}

func TestParsePolicyNamesProblems(t *testing.T) {
	_, err := ParsePolicy([]byte(`components:
  docker:
    minimum: "latest"
    known_bad: [{range: "~> 1.0", note: x}, {range: "< 2"}]
    end_of_life: [{range: "< 2", date: "soon"}]
`))
	if err == nil {
		t.Fatal("a bad policy was accepted")
	}
	for _, want := range []string{"components.docker.minimum", "known_bad[0]", "known_bad[1]: needs a note", "end_of_life[0].date"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := ParsePolicy([]byte("components: {docker: {minimun: 1}}")); err == nil {
		t.Error("an unknown key was accepted")
	}
}

// TestEvaluate runs a policy over real version strings.
func TestEvaluate(t *testing.T) {
	p, err := ParsePolicy([]byte(`components:
  docker:
    minimum: "23.0"
    known_bad: [{range: ">= 25.0.0, < 25.0.2", note: "a test entry"}]
    end_of_life: [{range: "< 24.0", date: "2024-06-01"}]
  runc:
    minimum: "1.1.12"
    known_bad: [{range: "< 1.1.12", note: "CVE-2024-21626"}]
  kernel:
    minimum: "6.1.0-10"
  nvidia-driver:
    minimum: "535.0"
`))
	if err != nil {
		t.Fatal(err)
	}
	inv := Inventory{
		"n1": {OS: "12", Docker: "20.10.24+dfsg1", Runc: "1.1.5+ds1", Kernel: "6.1.0-28-cloud-amd64", NVIDIA: "580.159.04"},
		"n2": {OS: "12", Docker: "25.0.1", Runc: "1.1.12", Kernel: "6.1.0-28-cloud-amd64", NVIDIA: "580.159.04"},
		"n3": {OS: "12", Docker: "27.3.1", Runc: "1.2.5", Kernel: "6.1.0-9-amd64", NVIDIA: "530.30.02"},
	}
	now := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	got := map[string]bool{}
	for _, f := range Evaluate(p, inv, now) {
		got[f.Kind+" "+f.Component+" "+f.Version+" "+strings.Join(f.Nodes, ",")] = true
	}
	for _, want := range []string{
		"below-minimum docker 20.10.24+dfsg1 n1",
		"end-of-life docker 20.10.24+dfsg1 n1",
		"known-bad docker 25.0.1 n2",
		"known-bad runc 1.1.5+ds1 n1",
		"below-minimum runc 1.1.5+ds1 n1",
		"below-minimum kernel 6.1.0-9-amd64 n3",
		"below-minimum nvidia-driver 530.30.02 n3",
		"drift docker  n1,n2,n3",
		"drift kernel  n1,n2,n3",
	} {
		if !got[want] {
			t.Errorf("missing finding %q; got %v", want, got)
		}
	}
	for _, not := range []string{"known-bad runc 1.1.12 n2", "below-minimum kernel 6.1.0-28-cloud-amd64 n1", "end-of-life docker 25.0.1 n2", "drift os  n1,n2,n3"} {
		if got[not] {
			t.Errorf("unexpected finding %q", not)
		}
	}
	// Before the end-of-life date, no end-of-life finding.
	for _, f := range Evaluate(p, inv, time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)) {
		if f.Kind == EndOfLife {
			t.Errorf("end of life reported before its date: %+v", f)
		}
	}
}
