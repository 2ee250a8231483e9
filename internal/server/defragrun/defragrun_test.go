package defragrun

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/state"
)

var fence = &state.Fence{Key: "leader", Rev: 1}

func apply(t *testing.T, r *Runner, want string) *api.DefragStep {
	t.Helper()
	step, err := r.Apply(context.Background(), fence, api.DefragRequest{Job: "train"})
	if err != nil {
		t.Fatalf("apply, expecting %s: %v", want, err)
	}
	if step.State != want {
		t.Fatalf("apply: %s (%s), want %s", step.State, step.Message, want)
	}
	return step
}

// TestApplyMovesOneReplicaAtATime carries TestGPUDefragPlanAndApply's
// plan out against the store alone: the first call places the
// replacement on the planned node and GPU (recorded as proposed, then
// started); calls while it is not healthy wait; once it is healthy the
// old replica is stopped with the reason; once that one is gone the job
// fits and an evaluation places it.
func TestApplyMovesOneReplicaAtATime(t *testing.T) {
	s, c := fragmented(), newClock()
	r := newRunner(s, c, fence, Config{})
	p, err := r.Plan(api.DefragRequest{Job: "train"})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Fits || len(p.Moves) != 1 || p.Moves[0].Alloc != "small-0" || p.Moves[0].ToNode != "gpu-b" || p.Index != s.Index() {
		t.Fatalf("plan %+v, want small-0 to gpu-b, then train fits, as of the store's index %d", p, s.Index())
	}
	if len(s.types()) != 0 {
		t.Fatalf("plan recorded %v: it must change nothing", s.types())
	}

	apply(t, r, api.DefragPlaced)
	repl := s.moving()
	if repl == nil || repl.PreviousAlloc != "small-0" || repl.NodeName != "gpu-b" || !strings.HasPrefix(repl.Move, "from gpu-a GPU [0] to gpu-b GPU [0]: ") {
		t.Fatalf("replacement %+v, want one of small-0 on gpu-b saying the move", repl)
	}
	if g := repl.Resources["main"].GPU; g == nil || g.Share == nil || g.Share.GPU != "gpu-b-gpu0" || g.Share.Milli != 300 {
		t.Errorf("replacement holds %+v, want 300 milli of gpu-b-gpu0", g)
	}
	if got, want := s.types(), []string{api.DefragEventProposed, api.DefragEventStarted}; !slices.Equal(got, want) {
		t.Errorf("records %v, want %v", got, want)
	}

	apply(t, r, api.DefragWaiting)
	s.report(repl.ID, api.AllocRunning, "")
	apply(t, r, api.DefragWaiting)
	if len(s.types()) != 2 {
		t.Errorf("waiting recorded %v", s.types())
	}

	s.report(repl.ID, api.AllocRunning, api.HealthHealthy)
	apply(t, r, api.DefragMoved)
	old, _ := s.Alloc("small-0")
	if old.DesiredStatus != api.AllocDesiredStop || !strings.HasPrefix(old.DesiredReason, "moved by GPU defragmentation to gpu-b") || !old.ModifyTime.Equal(c.Now()) {
		t.Errorf("old replica: %s %q at %s, want stopped, saying it moved to gpu-b", old.DesiredStatus, old.DesiredReason, old.ModifyTime)
	}
	if got, want := s.types(), []string{api.DefragEventProposed, api.DefragEventStarted, api.DefragEventHealthy, api.DefragEventCompleted}; !slices.Equal(got, want) {
		t.Errorf("records %v, want %v", got, want)
	}

	s.report("small-0", api.AllocComplete, "") // the agent stopped it
	step := apply(t, r, api.DefragDone)
	ev := s.Evals("default", "train")
	last := ev[len(ev)-1]
	if last.TriggeredBy != api.TriggerDefrag || !strings.Contains(step.Message, "fits now; evaluation "+api.ShortID(last.ID)) {
		t.Errorf("done: %q, last evaluation %+v, want one triggered by defrag that the message names", step.Message, last)
	}
}

// TestApplyGivesUpOnALateReplacement: a replacement not healthy within
// the deadline (5 minutes without an update block) is stopped and the
// old replica stays.
func TestApplyGivesUpOnALateReplacement(t *testing.T) {
	s, c := fragmented(), newClock()
	r := newRunner(s, c, fence, Config{})
	apply(t, r, api.DefragPlaced)
	repl := s.moving()
	c.Add(healthyDeadline + time.Second)
	step := apply(t, r, api.DefragFailed)
	got, _ := s.Alloc(repl.ID)
	old, _ := s.Alloc("small-0")
	if got.DesiredStatus != api.AllocDesiredStop || old.DesiredStatus != api.AllocDesiredRun || !strings.Contains(step.Message, "did not become healthy") {
		t.Errorf("late replacement %s, old replica %s, message %q: want the replacement stopped and the old one kept", got.DesiredStatus, old.DesiredStatus, step.Message)
	}
	if ts := s.types(); ts[len(ts)-1] != api.DefragEventAbandoned {
		t.Errorf("records %v, want the move abandoned last", ts)
	}
}

// TestPlaceRechecksAgainstTheNode: a move whose destination changed
// since the plan (here: its GPU was replaced) is not started; it is
// recorded as abandoned and answered 409, plan again.
func TestPlaceRechecksAgainstTheNode(t *testing.T) {
	s, c := fragmented(), newClock()
	r := newRunner(s, c, fence, Config{})
	p, err := r.Plan(api.DefragRequest{Job: "train"})
	if err != nil {
		t.Fatal(err)
	}
	b := *s.nodes["id-gpu-b"]
	b.GPUs = slices.Clone(b.GPUs)
	b.GPUs[0].UUID = "gpu-b-replaced"
	s.nodes["id-gpu-b"] = &b
	_, err = r.Place(context.Background(), fence, p.Moves[0], c.Now(), api.DefragByApply)
	var e *Error
	if !errors.As(err, &e) || e.HTTPStatus() != http.StatusConflict || !strings.Contains(e.Msg, "no longer has the planned GPUs; plan again") {
		t.Fatalf("place on a changed node: %v, want a 409 saying plan again", err)
	}
	if s.moving() != nil {
		t.Error("a replacement was placed on a node that changed")
	}
	if ts := s.types(); !slices.Equal(ts, []string{api.DefragEventAbandoned}) || !strings.HasPrefix(s.records[0].Reason, "not started: ") {
		t.Errorf("records %v, want the move abandoned, not started", ts)
	}
}

// TestForPlan: what `job plan` adds for a job blocked by fragmentation,
// and nothing for one that asks for no GPU.
func TestForPlan(t *testing.T) {
	s := fragmented()
	r := newRunner(s, newClock(), fence, Config{})
	train, _ := s.Job("default", "train")
	p := r.ForPlan(train, map[string]*api.Explanation{"g": {Unplaced: 1}})
	if p == nil || len(p.Moves) != 1 || p.Moves[0].Alloc != "small-0" {
		t.Errorf("ForPlan(train) = %+v, want the one move", p)
	}
	cpu := &api.Job{Name: "web", Namespace: "default", Groups: []*api.Group{{Name: "g", Tasks: []*api.Task{{Name: "t", Resources: api.Resources{CPU: 100}}}}}}
	if p := r.ForPlan(cpu, map[string]*api.Explanation{"g": {Unplaced: 1}}); p != nil {
		t.Errorf("ForPlan of a job without GPUs = %+v, want nil", p)
	}
}

// TestBackgroundProposesBeforeMoving: the first round proposes, the next
// starts the move, then rounds follow it to the end; a round whose write
// finds leadership gone returns state.ErrNotLeader, and a panic in a
// round is an error, not a dead server.
func TestBackgroundProposesBeforeMoving(t *testing.T) {
	s, c := fragmented(), newClock()
	r := newRunner(s, c, fence, Config{Interval: time.Minute})
	ctx := context.Background()
	round := func(want ...string) {
		t.Helper()
		if err := r.Round(ctx, fence); err != nil {
			t.Fatal(err)
		}
		if got := s.types(); !slices.Equal(got, want) {
			t.Fatalf("records %v, want %v", got, want)
		}
		c.Add(time.Minute)
	}
	round(api.DefragEventProposed)
	if s.moving() != nil || s.records[0].Source != api.DefragByBackground {
		t.Fatal("the first round moved something, or did not say it was the background's")
	}
	round(api.DefragEventProposed, api.DefragEventStarted)
	repl := s.moving()
	if repl == nil {
		t.Fatal("the second round started no move")
	}
	round(api.DefragEventProposed, api.DefragEventStarted)
	s.report(repl.ID, api.AllocRunning, api.HealthHealthy)
	round(api.DefragEventProposed, api.DefragEventStarted, api.DefragEventHealthy, api.DefragEventCompleted)

	if err := newRunner(fragmented(), c, nil, Config{}).Round(ctx, nil); !errors.Is(err, state.ErrNotLeader) {
		t.Errorf("a round without leadership: %v, want state.ErrNotLeader", err)
	}
	broken := New(Ports{View: panicky{fragmented()}, Writer: s, Front: front{}, Fence: leading(fence), Now: c.Now, Log: discard()}, Config{})
	var pe *panicError
	if err := broken.roundSafely(ctx, fence); !errors.As(err, &pe) {
		t.Errorf("a round that panicked: %v, want the panic as an error", err)
	}
	if err := newRunner(s, c, fence, Config{}).Run(ctx, fence); err != nil {
		t.Errorf("Run with no interval: %v, want nil at once", err)
	}
}

type panicky struct{ *store }

func (panicky) Snapshot() *state.Snapshot { panic("a bug") }

// serve mounts a runner's routes as the server does: an error is
// answered with its status.
func serve(t *testing.T, r *Runner) string {
	mux := http.NewServeMux()
	r.Routes(func(pattern string, h func(http.ResponseWriter, *http.Request) error) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, req *http.Request) {
			if err := h(w, req); err != nil {
				status := http.StatusInternalServerError
				var e *Error
				if errors.As(err, &e) {
					status = e.HTTPStatus()
				}
				front{}.WriteJSON(w, status, api.Error{Error: err.Error()})
			}
		})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestHandlers: the endpoints' answers and their statuses.
func TestHandlers(t *testing.T) {
	s := fragmented()
	leader := serve(t, newRunner(s, newClock(), fence, Config{}))
	notLeading := serve(t, newRunner(s, newClock(), nil, Config{}))
	noGPUs := serve(t, newRunner(newStore(), newClock(), fence, Config{}))
	for _, tc := range []struct {
		name, url, body string
		status          int
		want            string
	}{
		{"plan", leader + "/v1/gpu/defrag/plan", `{"job":"train"}`, 200, `"fits":true`},
		{"plan for an unknown job", leader + "/v1/gpu/defrag/plan", `{"job":"nope"}`, 404, `job \"nope\" not found in namespace \"default\"`},
		{"plan for a job not waiting", leader + "/v1/gpu/defrag/plan", `{"job":"big"}`, 409, "is not waiting for GPUs"},
		{"plan without GPUs", noGPUs + "/v1/gpu/defrag/plan", `{}`, 400, "no node in the cluster has a GPU"},
		{"apply without a job", leader + "/v1/gpu/defrag/apply", `{}`, 400, "apply needs the job to make room for"},
		{"apply without leadership", notLeading + "/v1/gpu/defrag/apply", `{"job":"train"}`, 503, "does not lead"},
		{"apply", leader + "/v1/gpu/defrag/apply", `{"job":"train"}`, 200, `"state":"placed"`},
	} {
		resp, err := http.Post(tc.url, "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		var body json.RawMessage
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.want) {
			t.Errorf("%s: %d %s, want %d with %s", tc.name, resp.StatusCode, body, tc.status, tc.want)
		}
	}
}
