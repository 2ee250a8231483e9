package scheduler

import (
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/gpu"
)

// ErrQueueLimit is returned (wrapped with the queue, the dimension and the
// amounts) when work would take its queue past the queue's limit. The work
// may be placed later, once the queue's usage falls.
var ErrQueueLimit = errors.New("queue limit reached")

// Resources is what queues are measured in: CPU in millicores, Memory in
// MiB and GPU in thousandths of a GPU (a whole GPU is 1000, a share its
// milli, a MIG instance its fraction of the GPU's compute slices).
type Resources struct {
	CPU    int64 `json:"cpu"`
	Memory int64 `json:"memory"`
	GPU    int64 `json:"gpu_milli"`
}

// Add returns r + o.
func (r Resources) Add(o Resources) Resources {
	return Resources{r.CPU + o.CPU, r.Memory + o.Memory, r.GPU + o.GPU}
}

// Sub returns r − o.
func (r Resources) Sub(o Resources) Resources {
	return Resources{r.CPU - o.CPU, r.Memory - o.Memory, r.GPU - o.GPU}
}

// Scale returns r × k.
func (r Resources) Scale(k int64) Resources { return Resources{r.CPU * k, r.Memory * k, r.GPU * k} }

// IsZero reports whether every dimension is zero.
func (r Resources) IsZero() bool { return r == Resources{} }

func (r Resources) dims() [3]int64 { return [3]int64{r.CPU, r.Memory, r.GPU} }

var dimNames = [3]string{"cpu", "memory", "gpu"}

// FromLimits converts queue limits (GPU in whole GPUs) to Resources.
func FromLimits(l api.QueueLimits) Resources {
	return Resources{CPU: int64(l.CPU), Memory: int64(l.Memory), GPU: int64(math.Round(l.GPU * 1000))}
}

// Limits converts back to queue limits (GPU in whole GPUs).
func (r Resources) Limits() api.QueueLimits {
	return api.QueueLimits{CPU: int(r.CPU), Memory: int(r.Memory), GPU: float64(r.GPU) / 1000}
}

// AllocResources is what an allocation counts against its queue.
func AllocResources(a *api.Allocation) Resources {
	var r Resources
	for _, t := range a.Resources {
		if t == nil {
			continue
		}
		r.CPU += int64(t.CPU)
		r.Memory += int64(t.Memory)
		if g := t.GPU; g != nil {
			r.GPU += 1000 * int64(len(g.Devices))
			if g.Share != nil {
				r.GPU += int64(g.Share.Milli)
			}
			if g.MIG != nil {
				r.GPU += migMilli(g.MIG.Profile)
			}
		}
	}
	return r
}

func migMilli(profile string) int64 {
	c, total := gpu.ProfileCompute(profile)
	return int64(1000 * c / total)
}

// GroupResources is what one replica of a group counts against its queue.
func GroupResources(g *api.Group) Resources {
	var r Resources
	for _, t := range g.Tasks {
		if t == nil {
			continue
		}
		r.CPU += int64(t.Resources.CPU)
		r.Memory += int64(t.Resources.Memory)
		if q := t.Resources.GPU; q != nil {
			switch {
			case q.Share != nil:
				r.GPU += int64(q.Share.Milli)
			case q.MIG != "":
				r.GPU += migMilli(q.MIG)
			default:
				r.GPU += 1000 * int64(q.Count)
			}
		}
	}
	return r
}

// ValidateQueue checks a queue definition: a legal name, weight ≥ 0,
// non-negative guarantee and limit, a guarantee within the limit, legal
// namespace names.
func ValidateQueue(q *api.Queue) error {
	bad := func(field, msg string, args ...any) error {
		return &ValidationError{Field: field, Msg: fmt.Sprintf(msg, args...)}
	}
	if !api.ValidName(q.Name) {
		return bad("name", "queue name %q %s", q.Name, api.NameRule)
	}
	if q.Weight < 0 {
		return bad("weight", "weight %d must be 0 (means 1) or more", q.Weight)
	}
	g := FromLimits(q.Guarantee).dims()
	for i, v := range g {
		if v < 0 {
			return bad("guarantee."+dimNames[i], "guarantee must not be negative")
		}
	}
	if q.Limit != nil {
		l := FromLimits(*q.Limit).dims()
		for i, v := range l {
			if v < 0 {
				return bad("limit."+dimNames[i], "limit must not be negative")
			}
			if v > 0 && g[i] > v {
				return bad("guarantee."+dimNames[i], "guarantee %d is above the limit %d", g[i], v)
			}
		}
	}
	for i, ns := range q.Namespaces {
		if !api.ValidName(ns) {
			return bad(fmt.Sprintf("namespaces[%d]", i), "namespace %q %s", ns, api.NameRule)
		}
	}
	return nil
}

// queueBook maps namespaces to queues and keeps each queue's usage.
type queueBook struct {
	byName   map[string]*api.Queue
	ns       map[string]string
	usage    map[string]Resources
	capacity Resources
}

func newQueueBook(queues []*api.Queue, nodes []*NodeState) *queueBook {
	b := &queueBook{byName: map[string]*api.Queue{}, ns: map[string]string{}, usage: map[string]Resources{}}
	for _, q := range queues {
		if q == nil {
			continue
		}
		b.byName[q.Name] = q
	}
	// Namespaces go to the first queue, by name, that lists them.
	names := make([]string, 0, len(b.byName))
	for n := range b.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, ns := range b.byName[n].Namespaces {
			if _, ok := b.ns[ns]; !ok {
				b.ns[ns] = n
			}
		}
	}
	if b.byName[api.DefaultQueue] == nil {
		b.byName[api.DefaultQueue] = &api.Queue{Name: api.DefaultQueue, Weight: 1}
	}
	for _, n := range nodes {
		if !n.schedulable {
			continue
		}
		b.capacity.CPU += int64(n.capCPU)
		b.capacity.Memory += int64(n.capMem)
		for i := range n.gpus {
			if n.gpus[i].Healthy {
				b.capacity.GPU += 1000
			}
		}
	}
	return b
}

func (b *queueBook) of(namespace string) string {
	if q, ok := b.ns[namespace]; ok {
		return q
	}
	return api.DefaultQueue
}

func (b *queueBook) add(a *api.Allocation, sign int64) {
	q := b.of(a.Namespace)
	b.usage[q] = b.usage[q].Add(AllocResources(a).Scale(sign))
}

func (b *queueBook) guarantee(q string) Resources {
	if x := b.byName[q]; x != nil {
		return FromLimits(x.Guarantee)
	}
	return Resources{}
}

// limitErr returns a wrapped ErrQueueLimit when usage+demand passes the
// queue's limit in a dimension it bounds (a zero dimension is unbounded).
func (b *queueBook) limitErr(q string, usage, demand Resources) error {
	x := b.byName[q]
	if x == nil || x.Limit == nil {
		return nil
	}
	l, u, d := FromLimits(*x.Limit).dims(), usage.dims(), demand.dims()
	for i := range l {
		if l[i] > 0 && d[i] > 0 && u[i]+d[i] > l[i] {
			return fmt.Errorf("queue %s %s limit %d, in use %d, asked %d: %w", q, dimNames[i], l[i], u[i], d[i], ErrQueueLimit)
		}
	}
	return nil
}

// borrowing reports whether usage passes the guarantee in some dimension.
func borrowing(usage, guarantee Resources) bool {
	u, g := usage.dims(), guarantee.dims()
	for i := range u {
		if u[i] > g[i] {
			return true
		}
	}
	return false
}

// within reports whether a queue that has a guarantee stays within it,
// in every dimension the guarantee names, once demand is added. A queue
// without a guarantee is never within it.
func within(usage, demand, guarantee Resources) bool {
	if guarantee.IsZero() {
		return false
	}
	u, d, g := usage.dims(), demand.dims(), guarantee.dims()
	for i := range u {
		if g[i] > 0 && u[i]+d[i] > g[i] {
			return false
		}
	}
	return true
}

// share is the queue's dominant share of the capacity, divided by its
// weight.
func (b *queueBook) share(q string, usage Resources) float64 {
	u, c := usage.dims(), b.capacity.dims()
	s := 0.0
	for i := range u {
		if c[i] > 0 {
			s = math.Max(s, float64(u[i])/float64(c[i]))
		}
	}
	w := 1
	if x := b.byName[q]; x != nil && x.Weight > 0 {
		w = x.Weight
	}
	return s / float64(w)
}

// Queues is the fair-share view of a cluster: which queue serves each
// namespace, what each queue uses, and the capacity of the schedulable
// nodes. The server's broker orders pending work with Order and checks
// limits with Admit; /v1/queues and `gantry queue status` show Status.
type Queues struct{ b *queueBook }

// NewQueues builds the queue view of a snapshot (cheaper than NewCluster:
// it only sums allocations per queue).
func NewQueues(snap *Snapshot) *Queues {
	var nodes []*NodeState
	for _, n := range snap.Nodes {
		if n != nil {
			nodes = append(nodes, newNodeState(n, api.DefaultPortRange))
		}
	}
	b := newQueueBook(snap.Queues, nodes)
	for _, a := range snap.Allocs {
		if a != nil && !a.Terminal() {
			b.add(a, 1)
		}
	}
	return &Queues{b}
}

// Queues is the cluster's queue view; it follows the cluster as plans
// change it.
func (c *Cluster) Queues() *Queues { return &Queues{c.queues} }

// QueueOf names the queue that serves a namespace: the first queue by name
// that lists it, else "default".
func (q *Queues) QueueOf(namespace string) string { return q.b.of(namespace) }

// Usage is what a queue's allocations hold.
func (q *Queues) Usage(queue string) Resources { return q.b.usage[queue] }

// Capacity is the allocatable total of the schedulable nodes (GPU: healthy
// GPUs × 1000).
func (q *Queues) Capacity() Resources { return q.b.capacity }

// Admit checks that demand fits the limit of the queue serving namespace,
// given what the queue uses now. It returns nil or a wrapped ErrQueueLimit.
func (q *Queues) Admit(namespace string, demand Resources) error {
	name := q.b.of(namespace)
	return q.b.limitErr(name, q.b.usage[name], demand)
}

// QueueStatus is one queue as `gantry queue status` shows it.
type QueueStatus struct {
	Name       string           `json:"name"`
	Weight     int              `json:"weight"`
	Namespaces []string         `json:"namespaces"`
	Guarantee  api.QueueLimits  `json:"guarantee"`
	Limit      *api.QueueLimits `json:"limit,omitempty"`
	Usage      api.QueueLimits  `json:"usage"`
	// Share is the dominant share (the largest fraction of the cluster's
	// capacity it holds in any dimension) divided by the weight.
	Share float64 `json:"share"`
	// Borrowing is true when usage passes the guarantee in some dimension:
	// that excess is what preemption reclaims first.
	Borrowing bool `json:"borrowing"`
}

// Status lists every queue (including "default") sorted by name.
func (q *Queues) Status() []QueueStatus {
	names := make([]string, 0, len(q.b.byName))
	for n := range q.b.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]QueueStatus, 0, len(names))
	for _, n := range names {
		x := q.b.byName[n]
		u := q.b.usage[n]
		w := x.Weight
		if w <= 0 {
			w = 1
		}
		out = append(out, QueueStatus{
			Name: n, Weight: w, Namespaces: append([]string(nil), x.Namespaces...),
			Guarantee: x.Guarantee, Limit: x.Limit, Usage: u.Limits(),
			Share: q.b.share(n, u), Borrowing: borrowing(u, FromLimits(x.Guarantee)),
		})
	}
	return out
}

// Pending is one piece of work waiting for placement, as the broker knows
// it.
type Pending struct {
	Key       string    // the caller's identity for it (an evaluation ID)
	Namespace string    //
	Priority  int       // higher first inside a queue
	Demand    Resources // what placing it all would add to its queue
	Seq       int64     // arrival order (a store index): earlier first
}

// Blocked is pending work held back, with the reason (a wrapped
// ErrQueueLimit).
type Blocked struct {
	Pending
	Err error
}

// OrderPending is NewQueues(snap).Order(pending): the broker's one call.
func OrderPending(snap *Snapshot, pending []Pending) (ordered []Pending, blocked []Blocked) {
	return NewQueues(snap).Order(pending)
}

// Order returns pending work in the order to schedule it, and the work its
// queue's limit holds back. Between queues it follows dominant-resource
// fairness: work that keeps its queue within the queue's guarantee goes
// first; then the queue with the smallest weighted dominant share (usage
// counted as if the earlier work were placed); ties by queue name. Inside
// a queue: priority (higher first), then Seq, then Key. Order does not
// change the Queues.
func (q *Queues) Order(pending []Pending) (ordered []Pending, blocked []Blocked) {
	perQ := map[string][]Pending{}
	for _, p := range pending {
		n := q.b.of(p.Namespace)
		perQ[n] = append(perQ[n], p)
	}
	names := make([]string, 0, len(perQ))
	for n, l := range perQ {
		names = append(names, n)
		sort.SliceStable(l, func(i, j int) bool {
			if l[i].Priority != l[j].Priority {
				return l[i].Priority > l[j].Priority
			}
			if l[i].Seq != l[j].Seq {
				return l[i].Seq < l[j].Seq
			}
			return l[i].Key < l[j].Key
		})
	}
	sort.Strings(names)
	usage := map[string]Resources{}
	for _, n := range names {
		usage[n] = q.b.usage[n]
	}
	ordered = make([]Pending, 0, len(pending))
	for {
		best := ""
		bestIn, bestShare := false, 0.0
		for _, n := range names {
			l := perQ[n]
			if len(l) == 0 {
				continue
			}
			in := within(usage[n], l[0].Demand, q.b.guarantee(n))
			s := q.b.share(n, usage[n])
			if best == "" || (in && !bestIn) || (in == bestIn && s < bestShare) {
				best, bestIn, bestShare = n, in, s
			}
		}
		if best == "" {
			return ordered, blocked
		}
		p := perQ[best][0]
		perQ[best] = perQ[best][1:]
		if err := q.b.limitErr(best, usage[best], p.Demand); err != nil {
			blocked = append(blocked, Blocked{p, err})
			continue
		}
		usage[best] = usage[best].Add(p.Demand)
		ordered = append(ordered, p)
	}
}
