package defragplan

import (
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler"
)

// TestBackground drives the background defragmenter's decision through
// its cases: a new plan is proposed before it is made, a proposed move
// starts within the rate limit and waits beyond it, a move under way is
// followed, only replicas of groups with migrate: true move (a batch job
// without it never does), and a proposal that no longer holds is
// withdrawn.
func TestBackground(t *testing.T) {
	eng := scheduler.New(scheduler.Config{})
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	// Two one-A100 nodes with 300 and 600 milli held: a whole-GPU job
	// waits, and moving the 300 onto the 600 makes room.
	frag := func(migrate bool, typ api.JobType) (*world, *Input) {
		w := newWorld(gpuNode("a", 1), gpuNode("b", 1))
		small := w.shareJob("small", 300, migrate)
		small.Type = typ
		w.share(small, "a", 0)
		big := w.shareJob("big", 600, false)
		w.share(big, "b", 0)
		return w, w.input(wholeTarget(1), 1)
	}
	planOf := func(in *Input) *api.DefragPlan {
		p, err := Decide(eng, in)
		if err != nil || len(p.Moves) != 1 {
			t.Fatalf("setup: plan %+v, %v", p, err)
		}
		return p
	}
	moved := func(ago ...time.Duration) []*api.Allocation {
		var out []*api.Allocation
		for _, d := range ago {
			out = append(out, &api.Allocation{ID: "r", Move: "from a to b", CreateTime: now.Add(-d), ClientStatus: api.AllocComplete})
		}
		return out
	}
	cases := []struct {
		name  string
		build func() *BackgroundInput
		want  string // action
		why   string // in Why
		move  string // the started move's allocation
	}{
		{"a new plan is proposed first, not made", func() *BackgroundInput {
			_, in := frag(true, api.JobService)
			return &BackgroundInput{Input: *in, Now: now, MovesPerHour: 6}
		}, BackgroundPropose, "next round", ""},
		{"a proposed move starts within the rate limit", func() *BackgroundInput {
			_, in := frag(true, api.JobService)
			return &BackgroundInput{Input: *in, Now: now, MovesPerHour: 6, Proposed: planOf(in), Moved: moved(59*time.Minute, 2*time.Hour)}
		}, BackgroundStart, "frees", "small-0"},
		{"a proposal for another job does not count", func() *BackgroundInput {
			_, in := frag(true, api.JobService)
			p := planOf(in)
			p.Job = "other"
			return &BackgroundInput{Input: *in, Now: now, MovesPerHour: 6, Proposed: p}
		}, BackgroundPropose, "", ""},
		{"the rate limit holds a proposed move back", func() *BackgroundInput {
			_, in := frag(true, api.JobService)
			return &BackgroundInput{Input: *in, Now: now, MovesPerHour: 2, Proposed: planOf(in), Moved: moved(10*time.Minute, 50*time.Minute, 3*time.Hour)}
		}, BackgroundWait, "2 move(s) started in the last hour (at most 2); the next may start at 2025-06-01T12:10:00Z", ""},
		{"moves of apply count too, and a limit below 1 is 1", func() *BackgroundInput {
			_, in := frag(true, api.JobService)
			return &BackgroundInput{Input: *in, Now: now, MovesPerHour: 0, Proposed: planOf(in), Moved: moved(time.Minute)}
		}, BackgroundWait, "at most 1", ""},
		{"a service without migrate never moves", func() *BackgroundInput {
			_, in := frag(false, api.JobService)
			return &BackgroundInput{Input: *in, Now: now, MovesPerHour: 100}
		}, BackgroundIdle, "migrate: true", ""},
		{"a batch job without migrate never moves", func() *BackgroundInput {
			_, in := frag(false, api.JobBatch)
			return &BackgroundInput{Input: *in, Now: now, MovesPerHour: 100}
		}, BackgroundIdle, "migrate: true", ""},
		{"a batch job with migrate moves", func() *BackgroundInput {
			_, in := frag(true, api.JobBatch)
			return &BackgroundInput{Input: *in, Now: now, MovesPerHour: 100, Proposed: planOf(in)}
		}, BackgroundStart, "", "small-0"},
		{"a move under way is followed, nothing new is planned", func() *BackgroundInput {
			w, in := frag(true, api.JobService)
			old := w.allocs[0]
			repl := *old
			repl.ID, repl.PreviousAlloc, repl.Move, repl.NodeName, repl.ClientStatus = "small-0-new", old.ID, "from a to b", "b", api.AllocPending
			in.Allocs = append(in.Allocs, &repl)
			return &BackgroundInput{Input: *in, Now: now, MovesPerHour: 6}
		}, BackgroundFollow, "small.g[0]", ""},
		{"nothing waits and nothing is fragmented: idle", func() *BackgroundInput {
			w := newWorld(gpuNode("a", 1), gpuNode("b", 1))
			w.share(w.shareJob("small", 300, true), "a", 0)
			return &BackgroundInput{Input: *w.input(nil, 0), Now: now, MovesPerHour: 6}
		}, BackgroundIdle, "frees a whole GPU", ""},
		{"nothing waits: the moves that free whole GPUs", func() *BackgroundInput {
			w := newWorld(gpuNode("a", 1), gpuNode("b", 1))
			w.share(w.shareJob("small", 300, true), "a", 0)
			w.share(w.shareJob("more", 300, true), "b", 0)
			in := w.input(nil, 0)
			p, _ := Decide(eng, in)
			return &BackgroundInput{Input: *in, Now: now, MovesPerHour: 6, Proposed: p}
		}, BackgroundStart, "become whole", "small-0"},
		{"a proposal that no longer holds is withdrawn", func() *BackgroundInput {
			_, in := frag(false, api.JobService)
			_, with := frag(true, api.JobService)
			return &BackgroundInput{Input: *in, Now: now, MovesPerHour: 6, Proposed: planOf(with)}
		}, BackgroundWithdraw, "migrate: true", ""},
		{"a plan that would move a group without migrate is refused", func() *BackgroundInput {
			_, in := frag(true, api.JobService)
			p := planOf(in)
			// The job changed after the search ran: the check of every
			// move refuses it (refuse, below, is what Background calls).
			in.Jobs[api.JobKey(p.Moves[0].Namespace, p.Moves[0].Job)].Groups[0].Migrate = false
			if why := refuse(in, p.Moves[0]); !strings.Contains(why, "migrate: false") {
				t.Fatalf("refuse: %q", why)
			}
			return &BackgroundInput{Input: *in, Now: now, MovesPerHour: 6, Proposed: p}
		}, BackgroundWithdraw, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := c.build()
			d, err := Background(eng, in)
			if err != nil {
				t.Fatal(err)
			}
			if d.Action != c.want || !strings.Contains(d.Why, c.why) {
				t.Fatalf("got %s (%s), want %s with %q", d.Action, d.Why, c.want, c.why)
			}
			if c.move != "" && (d.Move == nil || d.Move.Alloc != c.move) {
				t.Fatalf("started %+v, want a move of %s", d.Move, c.move)
			}
			if d.Action == BackgroundStart {
				if why := refuse(&in.Input, *d.Move); why != "" {
					t.Fatalf("started a move it must refuse: %s", why)
				}
			}
			// Same input, same decision.
			again, _ := Background(eng, c.build())
			if again.Action != d.Action || again.Why != d.Why {
				t.Fatalf("not deterministic: %s (%s) then %s (%s)", d.Action, d.Why, again.Action, again.Why)
			}
		})
	}
}
