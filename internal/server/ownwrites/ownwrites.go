// Package ownwrites remembers the plans the leader committed, or is
// committing, that its view of the store may not hold yet, so that the
// leader can decide the next evaluation without first waiting for the
// view to catch up with the last one.
//
// The leader's view follows etcd through a watch and lags its own writes.
// Until it catches up, the Log answers what the view cannot: which
// allocations the leader placed on a node (for the plan re-check), the
// plan revision it left on a node (for the next plan's guard), and the
// revision a job's evaluation must wait for (a job's evaluations stay in
// order: the next one of a job reads the view only once it holds the last
// commit of that job). Entries leave once the view's revision reaches
// them (Prune).
//
// The package does no I/O, reads no clock and is not safe for concurrent
// use: the leader's evaluation loop owns it.
package ownwrites

import (
	"math"

	"github.com/gantryhq/gantry/internal/api"
)

// Unknown is the revision of a commit still in flight: later than any the
// view can hold, so nothing waiting for it passes before it is done.
const Unknown = math.MaxInt64

// Log is the leader's committed and in-flight plans, oldest first.
type Log struct {
	commits []*Commit
}

// Commit is one evaluation's plan, in flight until Done or Abort.
type Commit struct {
	log  *Log
	job  string
	rev  int64
	byNo map[string][]*api.Allocation
	revs map[string]int64
}

// Begin records a plan of job (its api.JobKey) about to be committed,
// with the allocations it places. Until Done, the job waits (JobRev) and
// the placements count on their nodes (Placed).
func (l *Log) Begin(job string, placed []*api.Allocation) *Commit {
	c := &Commit{log: l, job: job, rev: Unknown, byNo: map[string][]*api.Allocation{}}
	for _, a := range placed {
		c.byNo[a.NodeID] = append(c.byNo[a.NodeID], a)
	}
	l.commits = append(l.commits, c)
	return c
}

// Done records that the plan committed at rev, the last revision it
// wrote (its evaluation's status included), leaving the plan revisions
// nodeRevs on the nodes it placed on (applier.Result.NodeRevs).
func (c *Commit) Done(rev int64, nodeRevs map[string]int64) {
	c.rev, c.revs = rev, nodeRevs
}

// Abort forgets a plan that did not commit.
func (c *Commit) Abort() {
	l := c.log
	for i, o := range l.commits {
		if o == c {
			l.commits = append(l.commits[:i], l.commits[i+1:]...)
			return
		}
	}
}

// Prune forgets the commits the view holds: those at or below viewRev.
func (l *Log) Prune(viewRev int64) {
	kept := l.commits[:0]
	for _, c := range l.commits {
		if c.rev > viewRev {
			kept = append(kept, c)
		}
	}
	clear(l.commits[len(kept):])
	l.commits = kept
}

// Len is the number of commits the view may not hold yet.
func (l *Log) Len() int { return len(l.commits) }

// Last is the revision the view must reach to hold every commit (Unknown
// while one is in flight; 0 when there is none).
func (l *Log) Last() int64 {
	var r int64
	for _, c := range l.commits {
		r = max(r, c.rev)
	}
	return r
}

// Oldest is the revision of the oldest done commit (0: none; commits in
// flight are not counted): the view reaching it shortens the log by one.
func (l *Log) Oldest() int64 {
	var r int64
	for _, c := range l.commits {
		if c.rev != Unknown && (r == 0 || c.rev < r) {
			r = c.rev
		}
	}
	return r
}

// JobRev is the revision the view must reach before an evaluation of job
// reads it (Unknown while one of its plans is in flight; 0: none).
func (l *Log) JobRev(job string) int64 {
	var r int64
	for _, c := range l.commits {
		if c.job == job {
			r = max(r, c.rev)
		}
	}
	return r
}

// NodeRev is the plan revision the leader's last done commit left on node
// (0: none the view may lack).
func (l *Log) NodeRev(node string) int64 {
	var r int64
	for _, c := range l.commits {
		if c.rev != Unknown {
			r = max(r, c.revs[node])
		}
	}
	return r
}

// Placed lists the allocations the leader placed on node that the view
// may not hold yet, in flight included.
func (l *Log) Placed(node string) []*api.Allocation {
	var out []*api.Allocation
	for _, c := range l.commits {
		out = append(out, c.byNo[node]...)
	}
	return out
}
