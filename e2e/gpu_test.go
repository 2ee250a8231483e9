package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// TestGPUPlacementDefaultPolicy runs the GPU jobs of the UI test on the
// fake node of five A100s with the server's default GPU policy (gantry,
// learning the typical tasks from the jobs submitted): MIG instances go
// to the MIG GPUs, the two shares pack onto one GPU so that the last
// plain GPU stays whole for the job that asks for one, and nothing lands
// on the GPU that fell off the bus.
func TestGPUPlacementDefaultPolicy(t *testing.T) {
	c := StartDev(t)
	fake := StartFakeNode(t, c, gpuNode())
	for _, j := range []struct{ name, count, gpu string }{
		{"train", "1", "{mig: 3g.20gb}"},
		{"infer", "2", "{mig: 1g.10gb}"},
		{"notebook", "2", "{share: {milli: 250, memory: 8192}}"},
		{"render", "1", "{count: 1}"},
	} {
		if r := c.Gantry("job", "run", "-d", WriteSpec(t, j.name+".yaml", gpuJob(j.name, j.count, j.gpu))); r.Code != 0 {
			t.Fatalf("job run %s: %d %s%s", j.name, r.Code, r.Stdout, r.Stderr)
		}
	}
	var allocs []*api.Allocation
	c.Eventually(60*time.Second, "six GPU allocations on the fake node", func() bool {
		var all []*api.Allocation
		if c.GetJSON("/v1/allocations?node="+fake.Node.ID, &all) != nil {
			return false
		}
		allocs = allocs[:0]
		for _, a := range all {
			if !a.Terminal() {
				allocs = append(allocs, a)
			}
		}
		return len(allocs) == 6
	})
	mig := map[string]bool{fake.Node.GPUs[0].UUID: true, fake.Node.GPUs[1].UUID: true}
	shareGPUs, wholeGPUs := map[string]int{}, map[string]int{}
	for _, a := range allocs {
		g := a.Resources["main"].GPU
		switch {
		case g == nil:
			t.Fatalf("%s holds no GPU", a.Name())
		case g.MIG != nil:
			if !mig[g.MIG.GPU] {
				t.Errorf("%s: MIG instance on %s, not a MIG GPU", a.Name(), g.MIG.GPU)
			}
		case g.Share != nil:
			shareGPUs[g.Share.GPU]++
		default:
			for _, u := range g.Devices {
				wholeGPUs[u]++
			}
		}
	}
	if len(shareGPUs) != 1 || len(wholeGPUs) != 1 {
		t.Fatalf("shares on %v and whole GPUs %v: want both shares on one GPU and the whole GPU on another", shareGPUs, wholeGPUs)
	}
	for u := range shareGPUs {
		if wholeGPUs[u] > 0 || u == fake.Node.GPUs[3].UUID || mig[u] {
			t.Fatalf("shares on %s (whole %v)", u, wholeGPUs)
		}
	}
	for u := range wholeGPUs {
		if u == fake.Node.GPUs[3].UUID || mig[u] {
			t.Fatalf("whole GPU %s: unhealthy or in MIG mode", u)
		}
	}
}

// An unknown --gpu-policy stops the server before it starts, naming the
// policies it knows.
func TestGPUPolicyFlagRejectsUnknown(t *testing.T) {
	r := runGantry(t, "server", "--insecure", "--data-dir", t.TempDir(), "--gpu-policy", "tetris")
	if r.Code != 1 || !strings.Contains(r.Stderr, `unknown GPU policy "tetris": use one of`) || !strings.Contains(r.Stderr, "gantry") {
		t.Fatalf("exit %d, stderr %q", r.Code, r.Stderr)
	}
}
