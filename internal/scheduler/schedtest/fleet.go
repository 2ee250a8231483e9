package schedtest

import (
	"fmt"
	"math/rand/v2"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler"
)

// Shape is a node shape of the benchmark fleets.
type Shape struct {
	CPU, Memory int    // millicores, MiB
	GPUs        int    // GPUs per node (0: a CPU node)
	Model       string // GPU model
	GPUMemory   int    // MiB
	MIG         bool   // GPUs in MIG mode, managed by the agent
}

// CPUShapes are the CPU node shapes of the fleets: five sizes from 4 to
// 96 cores with 2–8 GiB per core.
var CPUShapes = []Shape{
	{CPU: 4000, Memory: 16384},
	{CPU: 8000, Memory: 32768},
	{CPU: 16000, Memory: 65536},
	{CPU: 32000, Memory: 131072},
	{CPU: 48000, Memory: 196608},
	{CPU: 96000, Memory: 393216},
}

// GPUShapes are the GPU node shapes: 8-GPU H100, A100-80GB and
// A100-40GB nodes (some in MIG mode), 4-GPU T4 nodes and 4-GPU A30 MIG
// nodes.
var GPUShapes = []Shape{
	{CPU: 96000, Memory: 1048576, GPUs: 8, Model: "NVIDIA H100 80GB HBM3", GPUMemory: 81559},
	{CPU: 96000, Memory: 1048576, GPUs: 8, Model: "NVIDIA H100 80GB HBM3", GPUMemory: 81559, MIG: true},
	{CPU: 64000, Memory: 524288, GPUs: 8, Model: "NVIDIA A100-SXM4-80GB", GPUMemory: 81920},
	{CPU: 64000, Memory: 524288, GPUs: 8, Model: "NVIDIA A100-SXM4-40GB", GPUMemory: 40960, MIG: true},
	{CPU: 32000, Memory: 131072, GPUs: 4, Model: "Tesla T4", GPUMemory: 15360},
	{CPU: 48000, Memory: 262144, GPUs: 4, Model: "NVIDIA A30", GPUMemory: 24576, MIG: true},
}

// Fleet builds n ready nodes from the shapes, a gpuFraction of them GPU
// nodes, with random zone (8) and rack (40 per zone) labels and a class,
// all from seed. GPU nodes have NVLink between every pair of GPUs.
func Fleet(seed uint64, n int, gpuFraction float64) []*api.Node {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b9))
	nodes := make([]*api.Node, n)
	for i := range nodes {
		var s Shape
		class := "cpu"
		if r.Float64() < gpuFraction {
			s, class = GPUShapes[r.IntN(len(GPUShapes))], "gpu"
		} else {
			s = CPUShapes[r.IntN(len(CPUShapes))]
		}
		zone := r.IntN(8)
		opts := []NodeOpt{CPU(s.CPU), Memory(s.Memory), Disk(1 << 20), Class(class),
			Label("zone", fmt.Sprintf("z%d", zone)), Label("rack", fmt.Sprintf("z%d-r%02d", zone, r.IntN(40)))}
		if s.GPUs > 0 {
			gopts := []GPUOpt{NVLinked(), CC("8.0")}
			if s.MIG {
				gopts = append(gopts, MIGMode(true))
			}
			opts = append(opts, GPUs(s.GPUs, s.Model, s.GPUMemory, gopts...))
		}
		nodes[i] = Node(fmt.Sprintf("node-%05d", i), opts...)
	}
	return nodes
}

// Workload generates the jobs of a benchmark workload.
type Workload struct {
	r    *rand.Rand
	kind string
	seq  int
}

// Workloads of the benchmarks: "cpu" (services of 1–5 replicas asking
// cpu, memory and a dynamic port), "gpu-mixed" (60% cpu services, 40%
// GPU jobs: whole 1/2/4/8, MIG profiles, fractional shares), "gang8"
// (gangs of 8 replicas, a third of them with whole GPUs).
const (
	WorkloadCPU      = "cpu"
	WorkloadGPUMixed = "gpu-mixed"
	WorkloadGang8    = "gang8"
)

// NewWorkload returns a generator of the kind, from seed.
func NewWorkload(kind string, seed uint64) *Workload {
	return &Workload{r: rand.New(rand.NewPCG(seed, 7)), kind: kind}
}

var cpuSizes = []struct{ cpu, mem int }{{100, 128}, {250, 512}, {500, 1024}, {1000, 2048}, {2000, 4096}, {4000, 8192}, {8000, 16384}}

// Next returns the next job.
func (w *Workload) Next() *api.Job {
	w.seq++
	name := fmt.Sprintf("%s-%06d", w.kind, w.seq)
	r := w.r
	size := cpuSizes[r.IntN(len(cpuSizes))]
	switch {
	case w.kind == WorkloadGang8:
		tasks := []TaskOpt{}
		if r.IntN(3) == 0 {
			tasks = append(tasks, WholeGPUs([]int{1, 2, 4, 8}[r.IntN(4)], ""))
		}
		return Job(name, Type(api.JobBatch), Group("workers", 8, Gang(8), Task("w", size.cpu, size.mem, tasks...)))
	case w.kind == WorkloadGPUMixed && r.IntN(10) < 4:
		var g TaskOpt
		switch r.IntN(3) {
		case 0:
			g = WholeGPUs([]int{1, 1, 2, 4, 8}[r.IntN(5)], "")
		case 1:
			g = MIG([]string{"1g.10gb", "2g.20gb", "3g.40gb", "1g.5gb", "3g.20gb", "1g.6gb", "2g.12gb"}[r.IntN(7)])
		default:
			g = Share([]int{100, 250, 500, 700}[r.IntN(4)], 0, false)
		}
		return Job(name, Type(api.JobBatch), Group("g", 1+r.IntN(2), Task("t", size.cpu, size.mem, g)))
	}
	return Job(name, Group("g", 1+r.IntN(5), Task("t", size.cpu, size.mem, Port("http", 0))))
}

// Type sets the job type.
func Type(t api.JobType) JobOpt { return func(j *api.Job) { j.Type = t } }

// Request asks for every replica of every group of a new job.
func Request(job *api.Job) *scheduler.Request {
	req := &scheduler.Request{Job: job}
	for _, g := range job.Groups {
		for i := 0; i < g.Count; i++ {
			req.Place = append(req.Place, scheduler.Placement{Group: g.Name, Index: i})
		}
	}
	return req
}

// Capacity sums the allocatable cpu and memory and the GPUs of nodes.
func Capacity(nodes []*api.Node) (cpu, mem, gpus int) {
	for _, n := range nodes {
		a := n.Allocatable()
		cpu += a.CPU
		mem += a.Memory
		gpus += len(n.GPUs)
	}
	return
}

// Dominant returns the share of nodes' capacity that resources take in
// the dominant dimension of the benchmarks: cpu, or GPUs where the fleet
// has any.
func Dominant(nodes []*api.Node) func(scheduler.Resources) float64 {
	cpu, _, gpus := Capacity(nodes)
	return func(r scheduler.Resources) float64 {
		u := float64(r.CPU) / float64(cpu)
		if gpus > 0 {
			u = max(u, float64(r.GPU)/float64(1000*gpus))
		}
		return u
	}
}

// Fill plans jobs of w into c (through plan, which applies each plan to
// c) until the placed demand takes from of the fleet by share, then
// returns the requests of the jobs whose arrival brings the demand
// (placed or not) to upTo: the benchmarks time the placement of those.
func Fill(plan func(*scheduler.Request) (*scheduler.Plan, error), w *Workload, share func(scheduler.Resources) float64, from, upTo float64) ([]*scheduler.Request, error) {
	var demand scheduler.Resources
	for share(demand) < from {
		p, err := plan(Request(w.Next()))
		if err != nil {
			return nil, err
		}
		for _, a := range p.Placed {
			demand = demand.Add(scheduler.AllocResources(a))
		}
	}
	var reqs []*scheduler.Request
	arrived := demand
	for share(arrived) < upTo {
		j := w.Next()
		reqs = append(reqs, Request(j))
		for _, g := range j.Groups {
			arrived = arrived.Add(scheduler.GroupResources(g).Scale(int64(g.Count)))
		}
	}
	return reqs, nil
}
