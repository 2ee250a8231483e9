package scheduler

import (
	"fmt"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// DefaultSampleSize is how many feasible nodes are scored for each
// placement of work without GPUs when Config.SampleSize is 0.
const DefaultSampleSize = 16

// DefaultGPUSampleSize is how many feasible nodes are scored for each
// placement of GPU work when Config.GPUSampleSize is 0.
const DefaultGPUSampleSize = 16

// DefaultApartAttributes are the node attributes whose values replicas of
// a service prefer to differ in when Config.ApartAttributes is nil: the
// zone label and the physical host a VM node runs on. A reference this
// build does not resolve yet (${node.vsphere.host} before the vSphere
// integration) is ignored, as is one a node does not carry.
var DefaultApartAttributes = []string{"${node.labels.zone}", "${node.vsphere.host}"}

// Config tunes an Engine. The zero value is the default everywhere.
type Config struct {
	// Algorithm is the cluster's default node choice, api.PlacementBinpack
	// (default) or api.PlacementSpread; a job's Placement overrides it.
	Algorithm string
	// PortRange bounds dynamic host ports on nodes that report no range
	// (default api.DefaultPortRange).
	PortRange api.PortRange
	// GPUScorer rates nodes and picks devices for GPU work (default
	// BestFit).
	GPUScorer GPUScorer
	// SampleSize is how many feasible nodes are scored per placement of
	// work without GPUs, found through the free-cpu index (tightest first
	// for binpack, emptiest first for spread). 0: DefaultSampleSize;
	// negative: every node.
	SampleSize int
	// GPUSampleSize is the same for GPU work, found through the GPU index
	// (nodes by free shape, tightest first). 0: DefaultGPUSampleSize;
	// negative: every feasible node is scored, in node-ID order (the trace
	// simulator's setting).
	GPUSampleSize int
	// PackReplicas turns off the default for services: without it, the
	// replicas of a group of a service job prefer distinct nodes (a node
	// already holding one ranks below every node that holds none), then
	// distinct values of ApartAttributes. Batch jobs and jobs that ask
	// for placement "binpack" explicitly always pack.
	PackReplicas bool
	// ApartAttributes are the node attributes whose values a service's
	// replicas prefer to differ in (a soft term, after distinct nodes).
	// nil: DefaultApartAttributes; empty: none.
	ApartAttributes []string
	// MeasureRegret makes every placement chosen from a sample of the
	// nodes also scan every node and record, in Plan.Regret, how the
	// chosen node compares with the best one. For benchmarks: it costs a
	// full scan per placement, and a scorer that draws random numbers
	// sees more calls (so its plans change).
	MeasureRegret bool
	// DisablePreemption turns off eviction of lower-priority work and
	// reclaim of borrowed queue capacity.
	DisablePreemption bool
}

// Engine is Gantry's scheduler: feasibility, scoring, GPUs, gangs, queue
// limits, preemption and explanations. It holds only its configuration,
// so one Engine may serve many goroutines (each with its own snapshot or
// Cluster).
type Engine struct {
	cfg   Config
	apart []attrRef // ApartAttributes this build resolves
}

// New returns an Engine with the configuration, defaults filled in.
func New(cfg Config) *Engine {
	if cfg.Algorithm == "" {
		cfg.Algorithm = api.PlacementBinpack
	}
	if cfg.PortRange.Min <= 0 || cfg.PortRange.Max < cfg.PortRange.Min {
		cfg.PortRange = api.DefaultPortRange
	}
	if cfg.GPUScorer == nil {
		cfg.GPUScorer = BestFit{}
	}
	if cfg.SampleSize == 0 {
		cfg.SampleSize = DefaultSampleSize
	}
	if cfg.GPUSampleSize == 0 {
		cfg.GPUSampleSize = DefaultGPUSampleSize
	}
	if cfg.ApartAttributes == nil {
		cfg.ApartAttributes = DefaultApartAttributes
	}
	e := &Engine{cfg: cfg}
	for _, s := range cfg.ApartAttributes {
		if ref, err := parseAttr(s); err == nil && ref.kind != attrLiteral {
			e.apart = append(e.apart, ref)
		}
	}
	return e
}

// Config returns the configuration with its defaults filled in.
func (e *Engine) Config() Config { return e.cfg }

// NewCluster builds the working view of a snapshot with this engine's
// port range.
func (e *Engine) NewCluster(snap *Snapshot) *Cluster { return newCluster(snap, e.cfg.PortRange) }

// Schedule implements Scheduler: it builds a Cluster from the snapshot and
// plans the request against it. It never modifies the snapshot, and
// returns the same plan for the same snapshot and request (the order of
// the snapshot's nodes and allocations does not matter). A panic inside
// is returned as ErrInternal.
func (e *Engine) Schedule(snap *Snapshot, req *Request, now time.Time) (plan *Plan, err error) {
	defer func() {
		if r := recover(); r != nil {
			plan, err = nil, fmt.Errorf("%w: %v", ErrInternal, r)
		}
	}()
	_ = now // no time-dependent placement yet; kept for the interface
	return e.Plan(e.NewCluster(snap), req)
}

var _ Scheduler = (*Engine)(nil)
