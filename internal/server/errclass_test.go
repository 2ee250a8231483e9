package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler"
	"github.com/gantryhq/gantry/internal/server/applier"
	"github.com/gantryhq/gantry/internal/state"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestClassifyEvalErr(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want evalErrClass
	}{
		{"invalid request", fmt.Errorf("job x: %w", scheduler.ErrInvalid), failOnce},
		{"validation error", fmt.Errorf("plan: %w", &scheduler.ValidationError{}), failOnce},
		{"gang too large for a transaction", fmt.Errorf("apply: %w", applier.ErrUnitTooLarge), failOnce},
		{"an error of unknown meaning", errors.New("disk on fire"), failOnce},
		{"recovered panic", &panicError{where: "the scheduler", value: "index out of range"}, failPanic},
		{"wrapped panic", fmt.Errorf("job x: %w", &panicError{where: "the scheduler", value: 1}), failPanic},
		{"conflict", fmt.Errorf("node n1 changed: %w", state.ErrConflict), retry},
		{"timeout", fmt.Errorf("apply plan: %w", context.DeadlineExceeded), retry},
		{"etcd unavailable", fmt.Errorf("apply plan: %w", status.Error(codes.Unavailable, "connection refused")), retry},
		{"leadership moved", fmt.Errorf("apply: %w", state.ErrNotLeader), notLeader},
	} {
		if got := classifyEvalErr(tc.err); got != tc.want {
			t.Errorf("%s (%v): %s, want %s", tc.name, tc.err, got, tc.want)
		}
	}
}

// stubScheduler answers every call with answer and counts the calls.
type stubScheduler struct {
	calls  atomic.Int32
	answer func(call int) (*scheduler.Plan, error)
}

func (s *stubScheduler) Schedule(_ *scheduler.Snapshot, _ *scheduler.Request, _ time.Time) (*scheduler.Plan, error) {
	return s.answer(int(s.calls.Add(1)))
}

// TestBrokerFailsOnceOrRetriesByMeaning: before, the broker ran every
// failing evaluation five times whatever the error; an invalid request or
// a panic now fails it at the first try with the error's message, and
// only a conflict is retried.
func TestBrokerFailsOnceOrRetriesByMeaning(t *testing.T) {
	for _, tc := range []struct {
		name       string
		answer     func(call int) (*scheduler.Plan, error)
		wantStatus string
		wantDesc   string
		wantCalls  int32
		wantPanics float64
	}{
		{"invalid", func(int) (*scheduler.Plan, error) {
			return nil, fmt.Errorf("group g asks for 3 GPUs of model Z: %w", scheduler.ErrInvalid)
		}, api.EvalFailed, "asks for 3 GPUs of model Z", 1, 0},
		{"panic", func(int) (*scheduler.Plan, error) {
			panic("boom in the scorer")
		}, api.EvalFailed, "boom in the scorer", 1, 1},
		{"conflict then success", func(call int) (*scheduler.Plan, error) {
			if call < 3 {
				return nil, fmt.Errorf("cluster moved: %w", state.ErrConflict)
			}
			return &scheduler.Plan{Failed: map[string]*api.Explanation{}}, nil
		}, api.EvalComplete, "", 3, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sch := &stubScheduler{answer: tc.answer}
			s := startTestServer(t, Config{Scheduler: sch})
			job := `{"name":"j","type":"batch","groups":[{"name":"g","tasks":[{"name":"t","driver":"exec","config":{"command":"/bin/true"},"resources":{"cpu":10,"memory":10}}]}]}`
			var rr api.RegisterResponse
			if code, body := post(t, "http://"+s.Addr()+"/v1/jobs", "", job, &rr); code != http.StatusOK {
				t.Fatalf("register: %d %s", code, body)
			}
			var e *api.Evaluation
			waitFor(t, "the evaluation to finish", func() bool {
				var ok bool
				e, ok = s.store.Eval(rr.EvalID)
				return ok && e.Status != api.EvalPending
			})
			if e.Status != tc.wantStatus || !strings.Contains(e.StatusDescription, tc.wantDesc) {
				t.Errorf("evaluation %s %q, want %s containing %q", e.Status, e.StatusDescription, tc.wantStatus, tc.wantDesc)
			}
			if n := sch.calls.Load(); n != tc.wantCalls {
				t.Errorf("scheduler called %d times, want %d", n, tc.wantCalls)
			}
			if n := testutil.ToFloat64(s.met.panics); n != tc.wantPanics {
				t.Errorf("%s = %v, want %v", "gantry_eval_panics_total", n, tc.wantPanics)
			}
		})
	}
}
