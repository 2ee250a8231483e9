package applier

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/state"
	"pgregory.net/rapid"
)

// fakeStore records committed steps and fails the failAt'th transaction
// (1-based; 0: never) with a conflict, like a node changed under the plan.
type fakeStore struct {
	failAt    int
	calls     int
	rev       int64
	committed []*state.PlanCommit
}

func (f *fakeStore) ApplyPlan(_ context.Context, c *state.PlanCommit) (int64, error) {
	f.calls++
	if f.calls == f.failAt {
		return 0, fmt.Errorf("node changed: %w", state.ErrConflict)
	}
	f.rev++
	f.committed = append(f.committed, c)
	return f.rev, nil
}

func (f *fakeStore) placed() map[string]bool {
	out := map[string]bool{}
	for _, c := range f.committed {
		for _, a := range c.Place {
			out[a.ID] = true
		}
	}
	return out
}

func (f *fakeStore) updated() map[string]bool {
	out := map[string]bool{}
	for _, c := range f.committed {
		for _, a := range c.Update {
			out[a.ID] = true
		}
	}
	return out
}

func place(job, group string, i int, node string) *api.Allocation {
	return &api.Allocation{ID: fmt.Sprintf("%s-%s-%d", job, group, i), Namespace: "default", Job: job, Group: group, Index: i,
		NodeID: node, DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocPending}
}

func victim(id, node string) *api.Allocation {
	return &api.Allocation{ID: id, Namespace: "default", Job: "low", Group: "g", NodeID: node,
		DesiredStatus: api.AllocDesiredStop, DesiredReason: "preempted"}
}

// The chunking this replaced cut every 500 placements: with gangs of 300
// the second chunk split the second gang, and a conflict there left its
// first 200 replicas committed, holding their resources.
func TestGangNeverSplitByAConflictInALaterStep(t *testing.T) {
	var p Plan
	p.Gangs = map[string]bool{"train": true}
	p.Eval = &api.Evaluation{ID: "e1"}
	for _, job := range []string{"a", "b", "c"} {
		for i := range 300 {
			p.Place = append(p.Place, place(job, "train", i, fmt.Sprintf("n%d", i%40)))
		}
	}
	steps, err := (&Applier{Limits: Embedded}).Steps(&p)
	if err != nil || len(steps) != 3 {
		t.Fatalf("%d steps (%v), want one per gang", len(steps), err)
	}
	for failAt := 1; failAt <= 3; failAt++ {
		fs := &fakeStore{failAt: failAt}
		ap := &Applier{Store: fs, Limits: Embedded}
		res, err := ap.Apply(context.Background(), &p)
		if !errors.Is(err, state.ErrConflict) {
			t.Fatalf("failAt %d: err %v, want a conflict", failAt, err)
		}
		placed := fs.placed()
		for _, job := range []string{"a", "b", "c"} {
			n := 0
			for i := range 300 {
				if placed[fmt.Sprintf("%s-train-%d", job, i)] {
					n++
				}
			}
			if n != 0 && n != 300 {
				t.Errorf("failAt %d: gang %s has %d of 300 replicas committed", failAt, job, n)
			}
		}
		if res.Placed != len(placed) {
			t.Errorf("failAt %d: result says %d placed, the store holds %d", failAt, res.Placed, len(placed))
		}
		if res.Done {
			t.Errorf("failAt %d: a failed apply says done", failAt)
		}
		for _, c := range fs.committed {
			if c.Eval != nil {
				t.Errorf("failAt %d: the evaluation was written although a step failed", failAt)
			}
		}
	}
}

func TestPreemptionsCommitWithThePlacementsOnTheirNode(t *testing.T) {
	p := &Plan{Eval: &api.Evaluation{ID: "e1"}}
	// 600 independent placements, the preempting one among the last.
	for i := range 600 {
		p.Place = append(p.Place, place("web", "web", i, fmt.Sprintf("n%d", i%50)))
	}
	p.Place = append(p.Place, place("hi", "g", 0, "hot"))
	p.Preempt = []*api.Allocation{victim("v1", "hot"), victim("v2", "hot")}
	for failAt := 1; failAt <= 3; failAt++ {
		fs := &fakeStore{failAt: failAt}
		(&Applier{Store: fs, Limits: Embedded}).Apply(context.Background(), p)
		placedHot := fs.placed()["hi-g-0"]
		up := fs.updated()
		if up["v1"] != placedHot || up["v2"] != placedHot {
			t.Errorf("failAt %d: placement on hot committed %v, evictions v1 %v v2 %v", failAt, placedHot, up["v1"], up["v2"])
		}
	}
}

func TestUnitTooLargeWritesNothing(t *testing.T) {
	p := &Plan{Gangs: map[string]bool{"g": true}, Eval: &api.Evaluation{ID: "e1"}}
	for i := range 200 {
		p.Place = append(p.Place, place("big", "g", i, "n1"))
	}
	fs := &fakeStore{}
	_, err := (&Applier{Store: fs, Limits: External}).Apply(context.Background(), p)
	if !errors.Is(err, ErrUnitTooLarge) {
		t.Fatalf("err = %v, want ErrUnitTooLarge", err)
	}
	if fs.calls != 0 {
		t.Fatalf("%d transactions sent for a plan that cannot fit", fs.calls)
	}
}

func TestLastStepCarriesTheEvaluationAndGuardsFollowEachStep(t *testing.T) {
	p := &Plan{Eval: &api.Evaluation{ID: "e1"}, FollowUps: []*api.Evaluation{{ID: "e2"}},
		Deployments: []*api.Deployment{{ID: "d1"}}, Guards: map[string]int64{"n1": 7}}
	for i := range 120 {
		p.Place = append(p.Place, place("web", "web", i, "n1"))
	}
	fs := &fakeStore{}
	res, err := (&Applier{Store: fs, Limits: External}).Apply(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Done || res.Steps != 3 || res.Placed != 120 {
		t.Fatalf("result %+v, want 3 steps placing 120", res)
	}
	for i, c := range fs.committed {
		last := i == len(fs.committed)-1
		if (c.Eval != nil) != last || (len(c.FollowUps) > 0) != last {
			t.Errorf("step %d: eval %v follow-ups %d", i, c.Eval != nil, len(c.FollowUps))
		}
		if (len(c.Deployments) > 0) != (i == 0) {
			t.Errorf("step %d: %d deployments", i, len(c.Deployments))
		}
		want := int64(7)
		if i > 0 {
			want = int64(i) // the revision the step before committed at
		}
		if c.NodeGuards["n1"] != want {
			t.Errorf("step %d: guard of n1 %d, want %d", i, c.NodeGuards["n1"], want)
		}
	}
	if len(res.NodeRevs) != 1 || res.NodeRevs["n1"] != 3 {
		t.Errorf("NodeRevs %v, want n1 at the last step's revision 3", res.NodeRevs)
	}
}

// A plan cut short leaves the next plan's guards of what committed only.
func TestNodeRevsNameOnlyCommittedSteps(t *testing.T) {
	p := &Plan{Eval: &api.Evaluation{ID: "e1"}, Guards: map[string]int64{"n1": 7, "n2": 7}}
	for i := range 60 {
		p.Place = append(p.Place, place("web", "web", i, "n1"))
	}
	for i := 60; i < 120; i++ {
		p.Place = append(p.Place, place("web", "web", i, "n2"))
	}
	fs := &fakeStore{failAt: 2}
	res, err := (&Applier{Store: fs, Limits: External}).Apply(context.Background(), p)
	if err == nil || !res.Partial() {
		t.Fatalf("result %+v, err %v: want a partial commit", res, err)
	}
	if len(res.NodeRevs) != 1 || res.NodeRevs["n1"] != 1 {
		t.Fatalf("NodeRevs %v, want only n1, at revision 1", res.NodeRevs)
	}
}

// Property: whatever the plan and whichever transaction fails, no gang and
// no preemption set is committed in part, no step exceeds the limits, and
// a plan that commits commits everything exactly once.
func TestPropertyUnitsAreAllOrNothing(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		lim := Limits{TargetPlace: rapid.IntRange(0, 40).Draw(t, "target"), MaxOps: rapid.IntRange(60, 200).Draw(t, "maxops"), MaxBytes: 1 << 30}
		p := &Plan{Gangs: map[string]bool{}, Eval: &api.Evaluation{ID: "e"}}
		nodes := rapid.IntRange(1, 8).Draw(t, "nodes")
		groups := rapid.IntRange(1, 5).Draw(t, "groups")
		for g := range groups {
			name := fmt.Sprintf("g%d", g)
			if rapid.Bool().Draw(t, "gang") {
				p.Gangs[name] = true
			}
			for i := range rapid.IntRange(0, 30).Draw(t, "count") {
				p.Place = append(p.Place, place("j", name, i, fmt.Sprintf("n%d", rapid.IntRange(0, nodes-1).Draw(t, "node"))))
			}
		}
		for i := range rapid.IntRange(0, 6).Draw(t, "victims") {
			p.Preempt = append(p.Preempt, victim(fmt.Sprintf("v%d", i), fmt.Sprintf("n%d", rapid.IntRange(0, nodes-1).Draw(t, "vnode"))))
		}
		for i := range rapid.IntRange(0, 20).Draw(t, "stops") {
			p.Update = append(p.Update, victim(fmt.Sprintf("s%d", i), "n0"))
		}
		fs := &fakeStore{failAt: rapid.IntRange(0, 8).Draw(t, "failAt")}
		res, err := (&Applier{Store: fs, Limits: lim}).Apply(context.Background(), p)
		if errors.Is(err, ErrUnitTooLarge) {
			if fs.calls != 0 {
				t.Fatal("a refused plan sent transactions")
			}
			return
		}
		for _, c := range fs.committed {
			nodes := map[string]bool{}
			for _, a := range c.Place {
				nodes[a.NodeID] = true
			}
			if ops := len(c.Place) + len(c.Update) + len(nodes) + 1; ops > lim.MaxOps {
				t.Fatalf("a step holds %d operations, the limit is %d", ops, lim.MaxOps)
			}
		}
		placed, updated := fs.placed(), fs.updated()
		// Gangs.
		byGang := map[string][2]int{}
		for _, a := range p.Place {
			if p.Gangs[a.Group] {
				c := byGang[a.Group]
				c[1]++
				if placed[a.ID] {
					c[0]++
				}
				byGang[a.Group] = c
			}
		}
		for g, c := range byGang {
			if c[0] != 0 && c[0] != c[1] {
				t.Fatalf("gang %s: %d of %d committed", g, c[0], c[1])
			}
		}
		// Preemption sets: every eviction on a node commits exactly when
		// every placement on that node does.
		for _, v := range p.Preempt {
			for _, a := range p.Place {
				if a.NodeID == v.NodeID && placed[a.ID] != updated[v.ID] {
					t.Fatalf("eviction %s on %s committed %v, placement %s there %v", v.ID, v.NodeID, updated[v.ID], a.ID, placed[a.ID])
				}
			}
		}
		if err == nil {
			if !res.Done || len(placed) != len(p.Place) {
				t.Fatalf("done %v with %d of %d placed", res.Done, len(placed), len(p.Place))
			}
		}
		n := 0
		for _, c := range fs.committed {
			n += len(c.Place)
		}
		if n != len(placed) {
			t.Fatalf("an allocation was placed twice")
		}
	})
}
