package reconcile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// Input is everything the reconciler looks at for one job.
type Input struct {
	// Job is the current version, or nil when the job no longer exists.
	Job *api.Job
	// Allocs are every allocation of the job, terminal ones included.
	Allocs []*api.Allocation
	// Versions holds older versions of the job that live allocations run,
	// by version; a missing version counts as different.
	Versions map[uint64]*api.Job
	// Nodes holds the nodes the allocations sit on; a missing node is gone.
	Nodes map[string]*api.Node
	Now   time.Time

	// Deployment is the job's newest deployment, whatever its status; nil
	// when it has none.
	Deployment *api.Deployment
	// DeploymentID is the ID a deployment created by this call gets (the
	// caller makes IDs, so that the reconciler stays a pure function).
	DeploymentID string
	// Stable is the newest version older than the job's whose deployment
	// succeeded: where an automatic rollback goes. Nil when there is none.
	Stable *uint64
	// LostBatchGrace is how long batch work on a down node is left alone
	// before it is marked lost and replaced (the node may come back).
	LostBatchGrace time.Duration
}

// Placement is a replica to place; Previous is the allocation it replaces
// after a failure. Deployment names the deployment it belongs to, and
// Canary marks a canary placed beside the old version's replica.
type Placement struct {
	Group      string
	Index      int
	Previous   *api.Allocation
	Deployment string
	Canary     bool
}

// Stop is an allocation to stop, with the reason the user will read.
// Lost marks allocations whose node is gone: they are terminal at once.
type Stop struct {
	Alloc  *api.Allocation
	Reason string
	Lost   bool
}

// Result is what must change.
type Result struct {
	Place []Placement
	Stop  []Stop
	// InPlace are allocations whose group did not change between their
	// version and the job's: only their version moves.
	InPlace []*api.Allocation
	// RetryAt is when a delayed replacement becomes due; zero for none.
	RetryAt time.Time
	// GaveUp lists allocations that failed too often to be replaced.
	GaveUp []*api.Allocation
	// Waiting are allocations on a down node whose group says
	// disconnect.replace: false: they are neither marked lost nor
	// replaced; the servers wait for the node. Reason (WaitingPrefix and
	// the node) is what the allocation's desired reason should say.
	Waiting []Stop
	// Resumed are allocations that were waiting for their node, which is
	// back: their desired reason no longer applies.
	Resumed []*api.Allocation
	// Deployments are the deployments to write: one created for a new job
	// version, the running one with new progress or a final status, an
	// older one cancelled. Each is a copy; the input is never changed.
	Deployments []*api.Deployment
}

// Rescheduling of failed allocations: the delay doubles with each
// replacement in a chain, up to MaxRescheduleDelay; batch work gives up
// after MaxBatchReschedules.
const (
	RescheduleDelay     = 5 * time.Second
	MaxRescheduleDelay  = 5 * time.Minute
	MaxBatchReschedules = 2
)

// Reconcile compares the job with its allocations and says what to change.
func Reconcile(in *Input) *Result {
	r := &Result{}
	stopped := map[string]bool{}
	stop := func(a *api.Allocation, reason string, lost bool) {
		if !stopped[a.ID] {
			stopped[a.ID] = true
			r.Stop = append(r.Stop, Stop{Alloc: a, Reason: reason, Lost: lost})
		}
	}
	allocs := append([]*api.Allocation(nil), in.Allocs...)
	sort.Slice(allocs, func(i, j int) bool {
		if !allocs[i].CreateTime.Equal(allocs[j].CreateTime) {
			return allocs[i].CreateTime.Before(allocs[j].CreateTime)
		}
		return allocs[i].ID < allocs[j].ID
	})

	if in.Job == nil || in.Job.Stop {
		// Finished allocations are stopped too: their agents then remove
		// what they kept for the logs (exited containers, task dirs).
		for _, a := range allocs {
			if a.DesiredStatus == api.AllocDesiredRun {
				stop(a, "job stopped", false)
			}
		}
		if d := in.Deployment; d != nil && d.Active() {
			r.Deployments = append(r.Deployments, endDeployment(d, api.DeploymentCancelled, "job stopped", in.Now))
		}
		return r
	}
	job := in.Job
	allocs = withoutMoves(allocs)
	dep := deploymentFor(in, r)

	// Allocations on lost or draining nodes.
	var draining []*api.Allocation
	for _, a := range allocs {
		if a.DesiredStatus != api.AllocDesiredRun || a.ClientTerminal() {
			continue
		}
		n := in.Nodes[a.NodeID]
		switch {
		case n == nil:
			stop(a, fmt.Sprintf("node %s is gone", a.NodeName), true)
		case n.Status == api.NodeStatusDown:
			if g := job.LookupGroup(a.Group); g != nil && !api.DisconnectFor(job.Type, g, 0).Replace {
				r.Waiting = append(r.Waiting, Stop{Alloc: a, Reason: fmt.Sprintf("%snode %s is down; group %s has disconnect.replace false, so no replacement is placed",
					WaitingPrefix, n.Name, g.Name)})
				continue
			}
			if job.Type == api.JobBatch && in.LostBatchGrace > 0 {
				if due := n.StatusChanged.Add(in.LostBatchGrace); in.Now.Before(due) {
					if r.RetryAt.IsZero() || due.Before(r.RetryAt) {
						r.RetryAt = due
					}
					continue
				}
			}
			stop(a, fmt.Sprintf("node %s is down", n.Name), true)
		case n.Drain != nil:
			draining = append(draining, a)
		}
		if n != nil && n.Status != api.NodeStatusDown && strings.HasPrefix(a.DesiredReason, WaitingPrefix) {
			r.Resumed = append(r.Resumed, a)
		}
	}
	migrate(in, r, job, allocs, draining, stop)

	replaced := map[string]bool{}
	for _, a := range allocs {
		if a.PreviousAlloc != "" {
			replaced[a.PreviousAlloc] = true
		}
	}

	groups := map[string]bool{}
	outcomes := map[string]groupOutcome{}
	for _, g := range job.Groups {
		groups[g.Name] = true
		if g.Update != nil && dep != nil {
			outcomes[g.Name] = rollGroup(in, r, dep, g, allocs, stopped, replaced, stop)
			continue
		}
		reconcileGroup(in, r, job, g, allocs, stopped, replaced, stop)
	}
	if dep != nil {
		finishDeployment(in, r, dep, outcomes)
	}
	for _, a := range allocs {
		if !groups[a.Group] && a.DesiredStatus == api.AllocDesiredRun && !a.ClientTerminal() {
			stop(a, fmt.Sprintf("group %s removed from job", a.Group), false)
		}
	}
	return r
}

func reconcileGroup(in *Input, r *Result, job *api.Job, g *api.Group, allocs []*api.Allocation,
	stopped, replaced map[string]bool, stop func(*api.Allocation, string, bool)) {
	live := map[int]*api.Allocation{}   // index → the allocation serving it
	latest := map[int]*api.Allocation{} // index → newest allocation ever made for it
	for _, a := range allocs {
		if a.Group != g.Name || a.DesiredStatus != api.AllocDesiredRun {
			continue
		}
		latest[a.Index] = a
		if stopped[a.ID] || a.ClientTerminal() {
			continue
		}
		switch {
		case a.Index >= g.Count:
			stop(a, fmt.Sprintf("group %s scaled down to %d", g.Name, g.Count), false)
		case live[a.Index] != nil:
			stop(a, fmt.Sprintf("duplicate of replica %d", a.Index), false)
		case a.JobVersion != job.Version && !SameGroup(in.Versions[a.JobVersion], job, g.Name):
			stop(a, fmt.Sprintf("replaced by job version %d", job.Version), false)
			r.Place = append(r.Place, Placement{Group: g.Name, Index: a.Index})
			live[a.Index] = a // its replacement is placed above
		default:
			if a.JobVersion != job.Version {
				r.InPlace = append(r.InPlace, a)
			}
			live[a.Index] = a
		}
	}
	for i := 0; i < g.Count; i++ {
		if live[i] != nil {
			continue
		}
		fillSlot(in, r, job, g, i, latest[i], stopped, replaced, "")
	}
}

// fillSlot decides what to do about an index with no live allocation:
// place a replica now, later (after a failure's delay), or not at all.
// prev is the newest allocation ever made for the index.
func fillSlot(in *Input, r *Result, job *api.Job, g *api.Group, i int, prev *api.Allocation, stopped, replaced map[string]bool, deployment string) {
	switch {
	case prev == nil || stopped[prev.ID] && !isLost(r, prev):
		// Never placed, or stopped here for a reason that is not a
		// failure (draining): place fresh, keeping the link.
		p := Placement{Group: g.Name, Index: i, Deployment: deployment}
		if prev != nil {
			p.Previous = prev
		}
		r.Place = append(r.Place, p)
	case isLost(r, prev):
		r.Place = append(r.Place, Placement{Group: g.Name, Index: i, Previous: prev, Deployment: deployment})
	case prev.ClientStatus == api.AllocComplete && job.Type == api.JobBatch:
		// Batch work that finished stays finished.
	case replaced[prev.ID]:
		// Its replacement exists and is itself terminal; nothing newer
		// to act on (it would be latest otherwise).
	default:
		// Failed (or a service that exited): replace after a delay.
		if job.Type == api.JobBatch && prev.Reschedules >= MaxBatchReschedules {
			r.GaveUp = append(r.GaveUp, prev)
			return
		}
		due := prev.ModifyTime.Add(rescheduleDelay(prev.Reschedules))
		if in.Now.Before(due) {
			r.retryAt(due)
			return
		}
		r.Place = append(r.Place, Placement{Group: g.Name, Index: i, Previous: prev, Deployment: deployment})
	}
}

// retryAt asks for another evaluation at t, keeping the earliest.
func (r *Result) retryAt(t time.Time) {
	if r.RetryAt.IsZero() || t.Before(r.RetryAt) {
		r.RetryAt = t
	}
}

func isLost(r *Result, a *api.Allocation) bool {
	if a.ClientStatus == api.AllocLost {
		return true
	}
	for _, s := range r.Stop {
		if s.Alloc.ID == a.ID {
			return s.Lost
		}
	}
	return false
}

func rescheduleDelay(n int) time.Duration {
	d := RescheduleDelay
	for i := 0; i < n && d < MaxRescheduleDelay; i++ {
		d *= 2
	}
	return min(d, MaxRescheduleDelay)
}

// SameGroup reports whether the named group is the same in both versions,
// ignoring its count, update strategy and services (none of which changes
// what runs): then an allocation can move to the new version without a
// restart.
func SameGroup(old, cur *api.Job, name string) bool {
	if old == nil {
		return false
	}
	a, b := old.LookupGroup(name), cur.LookupGroup(name)
	if a == nil || b == nil {
		return false
	}
	ac, bc := *a, *b
	ac.Count, bc.Count = 0, 0
	ac.Update, bc.Update = nil, nil
	ac.Services, bc.Services = nil, nil
	aj, _ := json.Marshal(&ac)
	bj, _ := json.Marshal(&bc)
	return bytes.Equal(aj, bj) && old.Priority == cur.Priority && old.Type == cur.Type
}

// WaitingPrefix starts the desired reason of an allocation whose node is
// down and whose group says disconnect.replace: false.
const WaitingPrefix = "waiting for the node to come back: "

// DrainPrefix starts the reason given to allocations moved off a draining
// node.
const DrainPrefix = "node draining: "

// DrainRecheck is how often a drain in progress is looked at again.
const DrainRecheck = 5 * time.Second

// migrate moves allocations off draining nodes. Service groups move at
// most max_parallel at a time (their update block's, 1 without one): an
// allocation is stopped (and replaced elsewhere) only while fewer than
// max_parallel earlier replacements are still short of healthy. Batch
// work and everything still there at the drain's deadline is stopped at
// once.
func migrate(in *Input, r *Result, job *api.Job, allocs, draining []*api.Allocation, stop func(*api.Allocation, string, bool)) {
	if len(draining) == 0 {
		return
	}
	byID := make(map[string]*api.Allocation, len(allocs))
	for _, a := range allocs {
		byID[a.ID] = a
	}
	// Replacements of drained allocations that are not healthy yet, per
	// group.
	inFlight := map[string]int{}
	for _, a := range allocs {
		prev := byID[a.PreviousAlloc]
		if prev == nil || !strings.HasPrefix(prev.DesiredReason, DrainPrefix) {
			continue
		}
		if a.DesiredStatus == api.AllocDesiredRun && !a.ClientTerminal() && !(a.ClientStatus == api.AllocRunning && a.Health == api.HealthHealthy) {
			inFlight[a.Group]++
		}
	}
	recheck := func(t time.Time) {
		if r.RetryAt.IsZero() || t.Before(r.RetryAt) {
			r.RetryAt = t
		}
	}
	for _, a := range draining {
		n := in.Nodes[a.NodeID]
		reason := DrainPrefix + n.Name
		g := job.LookupGroup(a.Group)
		if job.Type == api.JobBatch || g == nil || !in.Now.Before(n.Drain.Deadline) {
			if !in.Now.Before(n.Drain.Deadline) {
				reason += " (deadline reached)"
			}
			stop(a, reason, false)
			continue
		}
		limit := 1
		if g.Update != nil && g.Update.MaxParallel > 0 {
			limit = g.Update.MaxParallel
		}
		if inFlight[a.Group] < limit {
			inFlight[a.Group]++
			stop(a, reason, false)
			continue
		}
		recheck(in.Now.Add(DrainRecheck))
		recheck(n.Drain.Deadline)
	}
}

// withoutMoves leaves out the replacements the GPU defragmenter has placed
// beside a replica that still runs (Allocation.Move): until it stops the
// old replica, the two are one replica, and the defragmenter, not the
// reconciler, decides which of them stays. Once the old replica is
// stopped, its replacement is an ordinary allocation again.
func withoutMoves(allocs []*api.Allocation) []*api.Allocation {
	live := map[string]bool{}
	moving := false
	for _, a := range allocs {
		if a.DesiredStatus == api.AllocDesiredRun && !a.ClientTerminal() {
			live[a.ID] = true
		}
		moving = moving || a.Move != ""
	}
	if !moving {
		return allocs
	}
	out := allocs[:0:0]
	for _, a := range allocs {
		if a.Move != "" && a.PreviousAlloc != "" && live[a.PreviousAlloc] && live[a.ID] {
			continue
		}
		out = append(out, a)
	}
	return out
}
