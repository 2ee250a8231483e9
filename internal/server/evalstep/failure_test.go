package evalstep

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/reconcile"
	"github.com/gantryhq/gantry/internal/server/applier"
	"github.com/gantryhq/gantry/internal/state"
)

func TestOnFailure(t *testing.T) {
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	e := &api.Evaluation{ID: "e1", Status: api.EvalPending, ModifyIndex: 3}
	cur := &api.Evaluation{ID: "e1", Status: api.EvalPending, ModifyIndex: 7}
	for _, tc := range []struct {
		name    string
		class   Class
		attempt int
		want    string // stepdown | backoff:<d> | failed[ panic]
	}{
		{"leadership moved", NotLeader, 1, "stepdown"},
		{"a conflict is retried", Retry, 1, "backoff:200ms"},
		{"backoff grows per attempt", Retry, 4, "backoff:800ms"},
		{"retries are bounded", Retry, MaxAttempts, "failed"},
		{"invalid input fails at once", FailOnce, 1, "failed"},
		{"a panic fails at once and is counted", FailPanic, 1, "failed panic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := OnFailure(e, cur, tc.class, tc.attempt, "it broke", now)
			var got string
			switch {
			case f.StepDown:
				got = "stepdown"
			case f.Backoff > 0:
				got = fmt.Sprintf("backoff:%s", f.Backoff)
			default:
				got = "failed"
				if f.Panic {
					got += " panic"
				}
				if f.Eval.Status != api.EvalFailed || f.Eval.StatusDescription != "it broke" || f.Eval.ModifyIndex != 7 || !f.Eval.ModifyTime.Equal(now) {
					t.Errorf("failed evaluation %+v: want status failed with the message, the view's index and now", f.Eval)
				}
			}
			if got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// fakePort records what Apply asks of it and fails SubmitPlan as told.
type fakePort struct {
	res     applier.Result
	err     error
	calls   []string
	dropErr error
}

func (p *fakePort) SubmitPlan(_ context.Context, pl *applier.Plan) (applier.Result, error) {
	p.calls = append(p.calls, fmt.Sprintf("submit place=%d eval=%s", len(pl.Place), pl.Eval.Status))
	return p.res, p.err
}

func (p *fakePort) UpdateEval(_ context.Context, e *api.Evaluation, create ...*api.Evaluation) (int64, error) {
	p.calls = append(p.calls, fmt.Sprintf("update %s %s create=%d", e.ID, e.Status, len(create)))
	return 42, nil
}

func (p *fakePort) DeleteEvals(_ context.Context, ids []string) error {
	p.calls = append(p.calls, "delete "+strings.Join(ids, ","))
	return p.dropErr
}

func TestApply(t *testing.T) {
	decision := func() *Decision {
		return &Decision{
			Planned:     &Planned{Result: &reconcile.Result{}, Placed: []*api.Allocation{{ID: "a1"}, {ID: "a2"}, {ID: "a3"}}},
			Eval:        &api.Evaluation{ID: "e1", Status: api.EvalComplete},
			DropRetries: []string{"r1"},
			Continue:    &api.Evaluation{ID: "e2", Status: api.EvalPending, TriggeredBy: api.TriggerPlanContinue},
		}
	}
	for _, tc := range []struct {
		name      string
		port      *fakePort
		wantCalls string
		wantErr   error
		partial   bool
		rev       int64
	}{
		{"committed, then retries dropped", &fakePort{res: applier.Result{Rev: 9, Steps: 1, Placed: 3, Done: true}},
			"submit place=3 eval=complete; delete r1", nil, false, 9},
		{"a conflict writes nothing else", &fakePort{err: state.ErrConflict},
			"submit place=3 eval=complete", state.ErrConflict, false, 0},
		{"a deposed leader's partial plan is not recorded", &fakePort{res: applier.Result{Rev: 5, Steps: 1, Placed: 1}, err: state.ErrNotLeader},
			"submit place=3 eval=complete", state.ErrNotLeader, false, 0},
		{"a partial commit is recorded with its continuation", &fakePort{res: applier.Result{Rev: 5, Steps: 1, Placed: 1}, err: state.ErrConflict},
			"submit place=3 eval=complete; update e1 complete create=1", nil, true, 42},
		{"a failed drop is reported, not an error", &fakePort{res: applier.Result{Rev: 9, Steps: 1, Done: true}, dropErr: errors.New("etcd slow")},
			"submit place=3 eval=complete; delete r1", nil, false, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Apply(context.Background(), tc.port, decision())
			if got := strings.Join(tc.port.calls, "; "); got != tc.wantCalls {
				t.Errorf("calls %q, want %q", got, tc.wantCalls)
			}
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Errorf("err %v, want %v", err, tc.wantErr)
			}
			if out.Partial != tc.partial || (err == nil && out.Rev != tc.rev) {
				t.Errorf("outcome %+v, want partial=%v rev=%d", out, tc.partial, tc.rev)
			}
		})
	}
	d := decision()
	done, next := Partial(d, applier.Result{Steps: 2, Placed: 1}, state.ErrConflict)
	if done.Status != api.EvalComplete || done.Placed != 1 || next.ID != "e2" ||
		!strings.Contains(done.StatusDescription, "1 of 3 placements committed in 2 transaction(s)") || !strings.Contains(done.StatusDescription, "evaluation e2 places the rest") {
		t.Errorf("partial record %+v / %s", done, next.ID)
	}
	if _, err := Apply(context.Background(), &fakePort{}, &Decision{Kind: Replan}); err == nil {
		t.Error("a replan decision was applied")
	}
}
