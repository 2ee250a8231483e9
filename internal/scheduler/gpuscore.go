package scheduler

import (
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/gpu"
)

// Ask is the demand of one replica of a group, as a GPU scorer sees it.
type Ask struct {
	Job    *api.Job
	Group  *api.Group
	CPU    int      // millicores, all tasks together
	Memory int      // MiB
	Disk   int      // MiB
	GPU    []GPUAsk // one per task that asks for GPUs, in task order
	Spread bool     // the job's algorithm is spread rather than binpack
}

// GPUAsk is one task's GPU request, resolved from api.GPURequest.
type GPUAsk struct {
	Task      string
	Form      gpu.Form // FormWhole, FormMIG or FormShare
	Count     int      // devices: the whole-GPU count; 1 for MIG and share
	Milli     int      // per device: 1000 for whole GPUs, the share's milli
	Memory    int      // share memory in MiB; 0 means Milli/1000 of the device (gpu.ShareMemory)
	Profile   string   // MIG profile
	Model     string   // model glob ("H100*", "V100M16|V100M32"); empty: any
	MemoryMin int      // MiB
	CCMin     int      // compute capability as major*100+minor; 0: any
	Enforce   bool     // share only on GPUs whose limits are enforced (MPS)
	// VM: the task is a virtual machine (driver qemu). A VM is given only
	// passthrough GPUs (bound to vfio-pci), and nothing else is ever
	// given one.
	VM bool

	profiles []profileOf // MIG: the profile resolved per geometry
}

type profileOf struct {
	geo *gpu.Geometry
	p   gpu.Profile
	ok  bool
}

// profile resolves a MIG ask's profile on a device, caching the answer
// per geometry for devices that report no placements of their own.
func (a *GPUAsk) profile(d *gpu.Device) (gpu.Profile, bool) {
	if d.Placements != nil {
		return d.Profile(a.Profile)
	}
	for i := range a.profiles {
		if a.profiles[i].geo == d.Geometry {
			return a.profiles[i].p, a.profiles[i].ok
		}
	}
	p, ok := d.Profile(a.Profile)
	if d.Geometry != nil {
		a.profiles = append(a.profiles, profileOf{d.Geometry, p, ok})
	}
	return p, ok
}

// Choice carries the GPU decision for one candidate node. Eligible[k]
// lists, for ask k of Ask.GPU, the indices (into NodeState.GPUs) of the
// devices that can serve it now: healthy, matching model, memory and
// compute capability, in the right MIG mode, held by no other form, with
// room for the share or a free instance or slot for the MIG profile. The
// core fills Eligible; the scorer may fill Picked.
type Choice struct {
	Eligible [][]int
	Picked   [][]int
}

// Pick records that ask k uses device i (an index into NodeState.GPUs).
func (c *Choice) Pick(k, i int) { c.Picked[k] = append(c.Picked[k], i) }

// GPUScorer rates a candidate node for a replica that asks for GPUs and
// chooses its devices. It is the pluggable part of GPU placement: the
// default is BestFit; the trace simulator plugs in random, dot-product,
// clustering, packing, best-fit and FGD scorers.
//
// Contract:
//   - ScoreGPU is called once per candidate node and placement, only for
//     nodes that pass every other check (status, drivers, constraints,
//     cpu, memory, disk, ports) and where every ask has enough Eligible
//     devices (at least Count; for MIG, a device with a free instance of
//     the profile or a legal free slot to create one).
//   - It returns a score, higher is better, and ok=false to reject the
//     node. The node with the highest score wins; ties go to the node seen
//     first (with a negative GPUSampleSize every node is seen, in
//     Cluster.Nodes order, so ties go to the lowest node ID; by default
//     the GPU index offers DefaultGPUSampleSize nodes, tightest first).
//     Before the score, nodes holding fewer replicas of a service's group
//     (then in zones or hosts below their share) win, and a spread picks
//     the values that are due. When the group has affinities or several
//     spreads, the core averages the score with those terms (each in
//     [-1, 1]); keep scores in [0, 1] for them to weigh equally.
//     Otherwise any scale works.
//   - To choose devices, append to c.Picked[k] (c.Pick) exactly
//     ask.GPU[k].Count distinct indices taken from c.Eligible[k]. Leaving
//     Picked[k] empty lets the core choose (DefaultPick). A choice that
//     breaks these rules is replaced by DefaultPick. For a MIG ask the
//     core then chooses the instance: a free existing one, else a new one
//     at the start slot that keeps the largest profiles placeable. When a
//     group has more than one GPU task, the core fills Picked for all of
//     them before the call (so they do not collide) and ignores changes.
//   - It must not modify n, ask or c.Eligible, nor keep them after it
//     returns; it runs on the scheduling goroutine, and an Engine shared by
//     several goroutines calls it concurrently.
//   - It must be fast: it runs for every candidate of every GPU
//     placement (with a negative GPUSampleSize, every feasible node).
//     Read n.GPUs() directly (FreeMilli, FreeMemory, Form, Model) and cache per-node values keyed by n.Index()
//     and n.Gen(). Such keys hold within one Cluster only: a scorer with
//     caches that may see several Clusters (an Engine's Schedule builds one
//     per call) implements PlanScorer to hand each its own instance. A
//     scorer that draws random numbers must own a seeded source; the plan
//     then depends on the order of calls.
type GPUScorer interface {
	ScoreGPU(n *NodeState, ask *Ask, c *Choice) (score float64, ok bool)
}

// GPUScorerFunc adapts a function to GPUScorer.
type GPUScorerFunc func(n *NodeState, ask *Ask, c *Choice) (float64, bool)

// ScoreGPU implements GPUScorer.
func (f GPUScorerFunc) ScoreGPU(n *NodeState, ask *Ask, c *Choice) (float64, bool) {
	return f(n, ask, c)
}

// BestFit is the default GPU scorer: it prefers the node left fullest
// (cpu, memory and, counted twice, GPU compute), or the emptiest one when
// the job asks for spread, and leaves the devices to DefaultPick.
type BestFit struct{}

// ScoreGPU implements GPUScorer.
func (BestFit) ScoreGPU(n *NodeState, ask *Ask, c *Choice) (float64, bool) {
	freeCPU, capCPU := n.CPU()
	freeMem, capMem := n.Memory()
	u := 0.0
	if capCPU > 0 {
		u += 1 - float64(freeCPU-ask.CPU)/float64(capCPU)
	}
	if capMem > 0 {
		u += 1 - float64(freeMem-ask.Memory)/float64(capMem)
	}
	devs := n.GPUs()
	free := 0
	for i := range devs {
		if devs[i].Healthy && devs[i].FreeMilli > 0 {
			free += devs[i].FreeMilli
		}
	}
	for k := range ask.GPU {
		free -= ask.GPU[k].Milli * ask.GPU[k].Count
	}
	if len(devs) > 0 {
		u += 2 * (1 - float64(free)/float64(1000*len(devs)))
	}
	s := u / 4
	if ask.Spread {
		s = 1 - s
	}
	return s, true
}

// DefaultPick fills every empty c.Picked[k]: whole GPUs by NVLink and NUMA
// affinity (gpu.PickConnected); a share on the eligible GPU with the least
// free compute (then memory, then index), so shares pack; a MIG instance
// on a GPU that has a free instance of the profile, else on the GPU with
// the most compute slices taken (then index).
func DefaultPick(n *NodeState, ask *Ask, c *Choice) {
	devs := n.GPUs()
	for k := range ask.GPU {
		if len(c.Picked[k]) > 0 {
			continue
		}
		a := &ask.GPU[k]
		el := c.Eligible[k]
		switch a.Form {
		case gpu.FormWhole:
			c.Picked[k] = gpu.PickConnected(devs, el, a.Count, c.Picked[k])
		case gpu.FormShare:
			best := -1
			for _, i := range el {
				if best < 0 || devs[i].FreeMilli < devs[best].FreeMilli ||
					(devs[i].FreeMilli == devs[best].FreeMilli && devs[i].FreeMemory < devs[best].FreeMemory) {
					best = i
				}
			}
			if best >= 0 {
				c.Picked[k] = append(c.Picked[k], best)
			}
		case gpu.FormMIG:
			best, bestFree := -1, false
			for _, i := range el {
				free := devs[i].FreeInstance(a.Profile) >= 0
				switch {
				case best < 0, free && !bestFree:
					best, bestFree = i, free
				case free == bestFree && devs[i].Compute > devs[best].Compute:
					best = i
				}
			}
			if best >= 0 {
				c.Picked[k] = append(c.Picked[k], best)
			}
		}
	}
}
