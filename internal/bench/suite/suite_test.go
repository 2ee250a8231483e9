package suite

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/bench/report"
)

func fake(name string, run func(ctx context.Context, rec *Recorder) error) Suite {
	return Suite{Name: name, Target: func(*Env) string { return "test" },
		Run: func(ctx context.Context, _ *Env, rec *Recorder) error { return run(ctx, rec) }}
}

func TestRunRecordsEveryOutcome(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	measured := func(ctx context.Context, rec *Recorder) error {
		rec.Add(report.NewFigure("ok/x", "ms", report.LowerIsBetter, []float64{1, 2}))
		return nil
	}
	suites := []Suite{
		fake("ok", measured),
		fake("skips", func(context.Context, *Recorder) error { return skipf("nginx is not installed") }),
		fake("fails", func(_ context.Context, rec *Recorder) error {
			rec.Add(report.NewFigure("fails/before", "ms", report.LowerIsBetter, []float64{3}))
			return errors.New("the cluster went away")
		}),
		fake("interrupted", func(ctx context.Context, rec *Recorder) error {
			rec.Add(report.NewFigure("interrupted/before", "ms", report.LowerIsBetter, []float64{4}))
			cancel()
			return ctx.Err()
		}),
		fake("never", measured),
	}
	r := &report.Report{}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	saves := 0
	Run(ctx, &Env{Progress: io.Discard}, suites, r, func() time.Time { now = now.Add(time.Second); return now }, func() { saves++ })
	want := []struct {
		status  string
		figures int
	}{{report.StatusOK, 1}, {report.StatusSkipped, 0}, {report.StatusFailed, 1}, {report.StatusInterrupted, 1}, {report.StatusInterrupted, 0}}
	if len(r.Suites) != len(want) {
		t.Fatalf("%d suites recorded, want %d", len(r.Suites), len(want))
	}
	for i, w := range want {
		s := r.Suites[i]
		if s.Status != w.status || len(s.Figures) != w.figures {
			t.Errorf("suite %s: %s with %d figures (%q), want %s with %d", s.Name, s.Status, len(s.Figures), s.Reason, w.status, w.figures)
		}
	}
	if r.Suites[1].Reason != "nginx is not installed" || r.Suites[0].Seconds != 1 {
		t.Errorf("skip reason %q, seconds %v", r.Suites[1].Reason, r.Suites[0].Seconds)
	}
	if !r.Partial || r.PartialReason != "suite fails failed; suite interrupted interrupted" {
		t.Errorf("partial %v %q", r.Partial, r.PartialReason)
	}
	if saves != 4 {
		t.Errorf("saved %d times, want after each of the 4 suites that ran", saves)
	}
}

func TestSelect(t *testing.T) {
	got, err := Select([]string{"startup", " sched", "startup", ""})
	if err != nil || len(got) != 2 || got[0].Name != "startup" || got[1].Name != "sched" {
		t.Fatalf("Select = %v, %v", got, err)
	}
	if _, err := Select([]string{"nope"}); err == nil || err.Error() != `no suite "nope": choose from sched, startup, proxy, failover, sim, scale` {
		t.Fatalf("unknown suite: %v", err)
	}
	if _, err := Select([]string{""}); err == nil {
		t.Fatal("no suite named: want an error")
	}
}

func TestPick(t *testing.T) {
	if pick(7, 1, 2, true) != 7 || pick(0, 1, 2, true) != 1 || pick(0, 1, 2, false) != 2 {
		t.Fatal("pick: a set value wins, else the mode's default")
	}
}

// TestScalePlan: the scale suite's cluster shape and leader kill are
// checked before anything starts, and a kill point below 1 is a fraction
// of the allocations.
func TestScalePlan(t *testing.T) {
	cases := []struct {
		servers  int
		killAt   float64
		external bool
		want     int
		fails    bool
	}{
		{servers: 1, want: 0},
		{servers: 3, want: 0},
		{servers: 3, killAt: 0.5, want: 50_000},
		{servers: 3, killAt: 0.000001, want: 1},
		{servers: 5, killAt: 25_000, want: 25_000},
		{servers: 3, killAt: 100_000, want: 100_000},
		{servers: 3, killAt: 100_001, fails: true},
		{servers: 3, killAt: 2.5, fails: true},
		{servers: 3, killAt: -1, fails: true},
		{servers: 1, killAt: 0.5, fails: true},
		{servers: 2, fails: true},
		{servers: 9, fails: true},
		{servers: 3, external: true, fails: true},
		{servers: 1, external: true, want: 0},
	}
	for _, tc := range cases {
		got, err := scalePlan(tc.servers, tc.killAt, 100_000, tc.external)
		if (err != nil) != tc.fails || got != tc.want {
			t.Errorf("scalePlan(%d servers, kill at %g, external %v) = %d, %v; want %d, failure %v", tc.servers, tc.killAt, tc.external, got, err, tc.want, tc.fails)
		}
	}
}
